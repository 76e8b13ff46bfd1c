"""Batch encoding of users: what ``seqrep infer`` (``pipelines/modeling/infer.py``) runs.

- ``encode_users``: user vectors from each user's whole history, batched (users of similar
  history lengths together, so sequence encoders that cut trailing padding compute only what the
  batch's longest history needs), under ``torch.inference_mode`` and optional bfloat16 autocast;
  users flagged ``fold_in`` (fresh activity the model was not trained on) go through
  ``model.fold_in``.
- ``encode_histories``: the same for histories given as item lists (a request's session in
  progress, a stream's fresh events): what ``seqrep query recommend --recent`` and ``seqrep
  stream`` run, so their vectors are the ones ``seqrep infer`` would publish for those histories.
- ``published_vectors``: user and item vectors as the tables publish them (a per-item score bias
  as one more coordinate).
- ``restrict_items``: the data without events on items a model trained earlier does not know.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from models.data import SequenceData
from models.errors import DataError


def restrict_items(data: SequenceData, n_items: int) -> tuple[SequenceData, int]:
    """``data`` without events on items above ``n_items`` (unknown to a model trained earlier),
    and how many events were removed."""
    keep = data.items <= n_items
    dropped = int((~keep).sum())
    if dropped == 0:
        return data, 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    offsets = kept_before[data.offsets]
    codes = None if data.event_codes is None else data.event_codes[keep]
    return replace(data, n_items=n_items, items=data.items[keep], offsets=offsets,
                   train_len=np.diff(offsets), splits={}, event_codes=codes), dropped


def encode_users(model, data: SequenceData, rows: np.ndarray, fold_in: np.ndarray | None = None, *,
                 batch_size: int = 2048, device: str = "cpu", bf16: bool = False,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """User vectors [len(rows), dim] (float32) from each row's whole history in ``data``; rows
    flagged in ``fold_in`` go through ``model.fold_in`` (methods with per-user parameters).
    ``bf16``: under bfloat16 autocast (see ``EmbeddingsConfig.bf16``). A model whose encoder was
    compiled (``model.compile_encode``) falls back to eager, with a warning, where compiling fails
    (no C++ compiler, say)."""
    import torch

    fold_in = np.zeros(len(rows), dtype=bool) if fold_in is None else fold_in
    out = np.empty((len(rows), model.params.dim), dtype=np.float32)
    # Batches of similar history lengths: sequence encoders cut trailing padding (SASRec, GRU4Rec),
    # so a batch of short histories costs what its longest one needs, not max_len positions.
    order = np.argsort(np.minimum(data.lengths[rows], model.params.max_len), kind="stable")
    model.eval()
    with torch.inference_mode(), torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
        for lo in range(0, len(rows), batch_size):
            at = order[lo:lo + batch_size]
            r = rows[at]
            history, lengths = model.histories(data, r, data.lengths[r])
            h = torch.as_tensor(history, device=device)
            n = torch.as_tensor(lengths, device=device)
            users = torch.as_tensor(data.users[r], device=device)
            f = fold_in[at]
            for sel, fn in ((~f, model.encode), (f, model.fold_in)):
                if sel.any():
                    s = torch.as_tensor(sel, device=device)
                    out[at[sel]] = fn(h[s], n[s], users[s]).float().cpu().numpy()
            if progress is not None:
                progress(len(r))
    return out



def encode_histories(model, histories: list[np.ndarray], users: np.ndarray | None = None, *,
                     fold_in: bool = True, batch_size: int = 2048, device: str = "cpu") -> np.ndarray:
    """User vectors [len(histories), dim] from item-index histories in time order (items the
    model knows, ``1..n_items``), through ``encode_users``; ``fold_in`` (the default) treats them
    as activity the model was not trained on (methods with per-user parameters derive the vector
    from the history). An empty history has no vector: the caller leaves it out."""
    from models.base import SequenceModel

    if type(model).histories is not SequenceModel.histories or model.uses_event_codes:
        raise DataError(f"{type(model).__name__} reads more than the items of a history (behaviors); "
                        "it cannot encode item lists")
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    if (lengths == 0).any():
        raise DataError("an empty history has no vector")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate(histories).astype(np.int64) if len(histories) else np.zeros(0, np.int64)
    if len(items) and (items.min() < 1 or items.max() > model.n_items):
        raise DataError(f"item indexes must be in 1..{model.n_items} (the model's items)")
    users = np.zeros(len(histories), np.int64) if users is None else np.asarray(users, np.int64)
    data = SequenceData(None, "loo", model.n_items, users, offsets, items, lengths)
    rows = np.arange(len(histories))
    return encode_users(model, data, rows, np.full(len(rows), fold_in), batch_size=batch_size, device=device)


def published_vectors(model, user_vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors [n_items, dim]) as the embedding tables hold them: where the
    score is ``<u, v_i> + b_i`` (``SequenceModel.item_bias``, BERT4Rec's) they are ``[u, 1]`` and
    ``[v_i, b_i]``, so an inner product is the score."""
    import torch

    with torch.inference_mode():
        item_vec = model.item_embeddings()[1:].float().cpu().numpy()
        bias = model.item_bias()
    if bias is not None:
        item_vec = np.hstack([item_vec, bias[1:model.n_items + 1].float().cpu().numpy()[:, None]])
    return published_users(model, user_vec), item_vec


def published_users(model, user_vec: np.ndarray) -> np.ndarray:
    """User vectors as the tables hold them (``published_vectors``), without the items' work."""
    return user_vec if model.item_bias() is None else np.hstack([user_vec, np.ones((len(user_vec), 1), np.float32)])
