"""Errors of the model library: a method or its data, as given, cannot be used.

Both are bad usage from the caller's side (the ``seqrep`` command line exits 2 on them);
``models`` knows nothing of the pipeline's own errors (``pipelines/core/errors.py``).
"""

from __future__ import annotations


class ModelError(ValueError):
    """Base of the model library's errors."""


class MethodError(ModelError):
    """Unknown method or invalid method configuration (the message says which key)."""


class DataError(ModelError):
    """The data given to a method lacks what it needs (the message says what, and how to get it)."""


class TrainingDiverged(ModelError):
    """The training loss became NaN or infinite (the message says in which epoch, and the learning rate)."""
