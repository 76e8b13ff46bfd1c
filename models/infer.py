"""Batch encoding of users: what ``seqrep infer`` (``pipelines/modeling/infer.py``) runs.

- ``encode_users``: user vectors from each user's whole history, batched (users of similar
  history lengths together, so sequence encoders that cut trailing padding compute only what the
  batch's longest history needs), under ``torch.inference_mode`` and optional bfloat16 autocast;
  users flagged ``fold_in`` (fresh activity the model was not trained on) go through
  ``model.fold_in``.
- ``restrict_items``: the data without events on items a model trained earlier does not know.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from models.data import SequenceData


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

