"""Item text features: TF-IDF over item metadata, reduced by truncated SVD (latent semantic analysis).

An item's document is its metadata fields joined by spaces, in this order (missing fields are
skipped): ``title``, ``category``, ``tags`` (the list, space-separated) and ``text``
(``TEXT_FIELDS``; a run can keep fewer, e.g. only titles). MovieLens' ``text`` repeats its title
and genres, so those words count twice; ``sublinear_tf`` keeps the repeat from dominating.

The documents come from the data's ``side`` (``pipelines.modeling.data.item_documents`` reads the
warehouse). Features, for the documents ``D`` of every item in the vocabulary as of a day:

    X = TfidfVectorizer(sublinear_tf, min_df)(D)          [N, V], rows L2-normalised
    T = TruncatedSVD(k, random_state)(X)                  [N, k]  (X ~ U S V^T, T = U S)
    t_i = T_i / ||T_i||                                   zero rows stay zero

(Deerwester et al., "Indexing by Latent Semantic Analysis", JASIS 1990; scikit-learn's
``TfidfVectorizer`` and ``TruncatedSVD``, randomized solver with a fixed seed, so a day's
features are the same on every run.) Row ``i`` of the returned matrix is item index ``i``; row 0
(padding) is zeros. An item without text (no metadata row, empty fields, or no term that passes
``min_df``) gets a zero row and ``has_text[i] = False``. When the vocabulary has fewer than ``k + 1``
terms (or items), the missing columns are zeros, so the shape is always ``[N + 1, k]``.

Fitting on the catalogue's metadata reads no interaction, so no evaluation target leaks through
it (a source whose metadata is itself derived from interactions, like Last.fm's tags, is another
matter: see ``models/multimodal.py``).

Why not a sentence-embedding model: none is installed here, and one would download its weights from
a model hub at run time; TF-IDF + SVD needs only scikit-learn and runs offline in seconds.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from models.data import SideData
from models.errors import DataError

TextField = Literal["title", "category", "tags", "text"]
TEXT_FIELDS: tuple[TextField, ...] = ("title", "category", "tags", "text")




def tfidf_svd(docs: Sequence[str], dim: int, *, min_df: int = 2, max_features: int | None = 50_000,
              random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LSA features of ``docs`` (see the module docstring): ``[len(docs), dim]`` float32 rows of
    unit norm or zero, and ``has_text`` (the document kept at least one term)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.decomposition import TruncatedSVD

    if dim < 1:
        raise ValueError(f"text feature size must be >= 1, got {dim}")
    docs = list(docs)
    out = np.zeros((len(docs), dim), dtype=np.float32)
    nonempty = np.array([bool(d.strip()) for d in docs], dtype=bool)
    if nonempty.sum() < max(min_df, 2):
        raise DataError(f"{int(nonempty.sum())} item(s) have text: too few to fit TF-IDF with min_df={min_df}")
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=min_df, max_features=max_features, dtype=np.float32)
    try:
        vectorizer.fit([d for d, keep in zip(docs, nonempty) if keep])
    except ValueError as exc:  # "empty vocabulary; perhaps the documents only contain stop words"
        raise DataError(f"TF-IDF over the item texts: {exc} (lower text_min_df?)") from None
    x = vectorizer.transform(docs)
    has_text = np.diff(x.indptr) > 0
    k = min(dim, x.shape[1] - 1, x.shape[0])
    if k < 1:
        raise DataError(f"the item texts have {x.shape[1]} term(s) after min_df={min_df}: nothing to reduce")
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=random_state)
    t = svd.fit_transform(x).astype(np.float32)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    k = t.shape[1]  # the solver may return fewer components than asked on tiny inputs
    out[:, :k] = np.divide(t, norm, out=np.zeros_like(t), where=norm > 0)
    return out, has_text & (norm[:, 0] > 0)


def item_text_features(side: SideData | None, n_items: int, dim: int, *,
                       fields: Sequence[TextField] = TEXT_FIELDS, min_df: int = 2,
                       random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Text features ``[n_items + 1, dim]`` (row = item index, row 0 zeros) and ``has_text``
    ``[n_items + 1]`` of the items' documents as ``side`` gives them (the warehouse's items as of
    the data's day, ``SideData.item_documents``)."""
    if side is None:
        raise DataError("item texts come from the warehouse (vocab/items and items/source=*); this data has no "
                        "warehouse side: load it with pipelines.modeling.data.load")
    docs = side.item_documents(n_items, fields)
    docs[0] = ""  # padding never has text
    return tfidf_svd(docs, dim, min_df=min_df, random_state=random_state)
