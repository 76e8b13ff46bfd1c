"""Multi-task learning over behaviors: MMoE heads per behavior on a SASRec encoder.

**Model.** A user's events carry an item and a behavior (the ETL's ``event_type``: Taobao's pv is
``view``, then ``cart``, ``fav``, ``buy``). The shared encoder is SASRec's causal stack
(``models.transformer``) whose input adds a behavior embedding to each event:

    H^0 = dropout(sqrt(d) E[x_j] + B[b_j] + P_j),   h_j = LayerNorm(TransformerLayers_causal(H^0))_j

On top, MMoE (Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018, https://doi.org/10.1145/3219819.3220007): ``K`` shared experts,
one softmax gate and one tower per task ``t``,

    e_k = GELU(W_k h + c_k),   g_t = softmax(G_t h) in R^K,   m_t = sum_k g_{t,k} e_k,
    u_t = h + tower_t(m_t)     (tower_t: Linear, GELU, dropout, Linear; ``residual: false`` drops h)

and ``score_t(i) = <u_t, E[i]>``: the item vectors are SASRec's, shared by every task. The residual
``h +`` is not in the paper; it keeps the single-task model equal to SASRec plus a correction, so
a multi-task gain is not an artefact of a weaker head.

**Loss.** At every position ``j`` of a training window, the next event's item ``x_{j+1}`` is
predicted by the head of the next event's behavior ``b_{j+1}`` (full softmax, or the configured
``models.base.next_item_loss``); per task the loss is the mean over that task's targets in the
batch, and the total is ``sum_t w_t L_t`` over the configured ``tasks`` (``task_weights``, 1 by
default). Targets of a behavior that is not a task are not predicted, but their events are still
read as input. A single-task baseline is this class with ``tasks: [buy]`` (say): the same encoder,
input and data, trained only on buy targets; windows without any target of a task are dropped.

**Representation.** Training examples and evaluation histories pack item and behavior in one
integer, ``x + (N + 1) * code`` (``code`` = 1 + the behavior's index in
``BEHAVIORS``, 0 = padding / unknown), so the shared trainer shuffles and
batches them like item windows; ``histories`` (the evaluator's hook) returns packed histories. A
history of plain item indexes is read with behavior unknown (a zero behavior embedding). The
published user vector (``encode``) is the head of ``active_task`` when set, else the mixture
``u = sum_t pi_t u_t`` with ``pi_t`` the share of task ``t`` among the weighted training targets
(so ``score = sum_t pi_t score_t``): the predictor of "the next event, whatever its behavior".

**Per-task evaluation** (``task_splits``, ``evaluate_tasks``). The held-out part of a user's
sequence is everything from the ``test`` split's history on: with the ``temporal`` protocol (this
method's default) the events of the as-of day D (the Taobao sample's last day). For task ``t``
the target is the item of the user's *last* type-``t`` event in the held-out part, and the history
is every event before it (including earlier held-out events, which are never trained on). Every
target lies at or after the test history and so after ``train_len`` (which also stops before the
validation target): no per-task target, and no event after it, is ever a training event
(``task_splits`` checks it). Seen items are *not* masked in per-task rankings: on Taobao most carts
and buys are of items the user viewed before, so masking would score them as misses. With the
``loo`` protocol the held-out part is the last event alone (one task per user): allowed, but thin.

**Early stopping.** The shared trainer ranks ``data.splits['valid']`` (temporal: each active
user's last event before D, of any behavior) with ``encode``'s mixture vector, the model's
prediction of the next event whatever its behavior; ``mmoe.yaml`` turns ``mask_seen`` off for the
reason above. For a single-task model the mixture is its one head, so its stopping signal is the
same any-behavior target (a known limit: a per-task stopping rule would need a per-task
validation split, which the shared trainer does not have).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace
from typing import ClassVar, Iterator

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from models.base import ModelParams, next_item_loss
from models.data import (DataError, SequenceData, Split, history_windows, ragged_positions, ragged_rows,
                         training_windows, windows)
from models.transformer import SASRec, TransformerParams

#: The behaviors a model has a code for, in code order: the pipeline's canonical event types
#: (``pipelines.core.config.EVENT_TYPES``; a test checks they agree). Part of a trained model's
#: contract: its behavior embedding's row ``c`` is ``BEHAVIORS[c - 1]``.
BEHAVIORS: tuple[str, ...] = ("view", "click", "cart", "fav", "buy", "rate", "play", "tag")
#: Behavior codes: 0 is padding / unknown, ``BEHAVIORS[c - 1]`` is code ``c``.
BEHAVIOR_CODES: dict[str, int] = {name: i + 1 for i, name in enumerate(BEHAVIORS)}
#: Taobao's and the literature's names for the canonical behaviors.
ALIASES: dict[str, str] = {"pv": "view"}


def behavior_code(name: str) -> int:
    """The code of a behavior name (``pv`` is ``view``)."""
    name = ALIASES.get(name, name)
    if name not in BEHAVIOR_CODES:
        raise ValueError(f"unknown behavior {name!r}; known: {', '.join(BEHAVIORS)} (and pv = view)")
    return BEHAVIOR_CODES[name]


# -- data: behaviors aligned with the items ------------------------------------------------------

def load_behaviors(data: SequenceData) -> np.ndarray:
    """Behavior codes aligned with ``data.items``, from the event types of ``data.side`` (the
    warehouse's sequences as of ``data.day`` when the data was loaded from one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if data.side is None:
        raise DataError("these sequences have no warehouse side to read event types from; set data.event_codes "
                        "(codes aligned with data.items, see models.multitask.BEHAVIOR_CODES)")
    users, lengths, names = data.side.event_types()
    if not np.array_equal(users, data.users) or not np.array_equal(lengths, data.lengths):
        raise DataError(f"the event types as of {data.day} are not aligned with the loaded items "
                        "(the warehouse changed since it was loaded?)")
    idx = pc.index_in(names, value_set=pa.array(BEHAVIORS))
    if idx.null_count:
        bad = pc.unique(pc.filter(names, pc.is_null(idx))).to_pylist()
        raise DataError(f"sequences.event_type has behaviors outside models.multitask.BEHAVIORS: {bad}")
    return idx.to_numpy().astype(np.int64) + 1


def behavior_codes(data: SequenceData) -> np.ndarray:
    """``data.event_codes`` (behavior codes aligned with ``data.items``), loaded once and kept on ``data``."""
    codes = data.event_codes
    if codes is None:
        codes = data.event_codes = load_behaviors(data)  # the trainer and the evaluator share one load
    if len(codes) != len(data.items):
        raise DataError(f"data.event_codes has {len(codes)} codes for {len(data.items)} events")
    return codes


def pack(items: np.ndarray | Tensor, codes: np.ndarray | Tensor, n_items: int):
    """Item and behavior in one integer: ``item + (n_items + 1) * code`` (0 stays padding)."""
    return items + (n_items + 1) * codes * (items > 0)


def task_splits(data: SequenceData, tasks: list[str] | tuple[str, ...]) -> dict[str, Split]:
    """Per-task test rows (see the module docstring): per user and task, the last event of that
    behavior in the held-out part (from the ``test`` split's history on), read from every event before it."""
    if "test" not in data.splits:
        raise ValueError(f"no test split in the {data.protocol} splits as of {data.day}: per-task targets need one")
    codes = behavior_codes(data)
    test = data.splits["test"]
    starts = data.offsets[test.rows] + test.history_len
    ends = data.offsets[test.rows + 1]
    pos = ragged_positions(starts, ends)
    row = ragged_rows(starts, ends)
    out: dict[str, Split] = {}
    for task in tasks:  # a handful of behaviors; rows are vectorized
        hit = codes[pos] == behavior_code(task)
        p, r = pos[hit], row[hit]
        last = np.r_[r[1:] != r[:-1], True] if len(r) else np.zeros(0, dtype=bool)  # positions ascend per row
        p, r = p[last], r[last]
        rows = test.rows[r]
        history = p - data.offsets[rows]
        if np.any(history < np.maximum(data.train_len[rows], 1)):
            raise AssertionError(f"task {task}: a target inside the training events")  # guards the protocol
        out[task] = Split(rows, history, data.items[p][:, None])
    return out


# -- the model -----------------------------------------------------------------------------------

class MMoEParams(TransformerParams):
    #: Behaviors with a head (``pv`` = ``view``); one entry trains a single-task baseline.
    tasks: list[str] = Field(default_factory=lambda: ["view", "cart", "fav", "buy"], min_length=1)
    #: Loss weight ``w_t`` per task (missing tasks: 1).
    task_weights: dict[str, float] = Field(default_factory=dict)
    num_experts: int = Field(4, ge=1)
    #: Width of each expert's output (0: ``dim``).
    expert_dim: int = Field(0, ge=0)
    #: Add a behavior embedding to each event's input (false: items only, behaviors only route the loss).
    behavior_input: bool = True
    #: ``u_t = h + tower_t(m_t)`` (true) or the paper's ``u_t = tower_t(m_t)``.
    residual: bool = True

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        names = [ALIASES.get(t, t) for t in v]
        for t in names:
            behavior_code(t)
        if len(set(names)) != len(names):
            raise ValueError(f"tasks repeat a behavior: {v}")
        return names

    @model_validator(mode="after")
    def _weights_of_tasks(self) -> "MMoEParams":
        self.task_weights = {ALIASES.get(k, k): w for k, w in self.task_weights.items()}
        extra = set(self.task_weights) - set(self.tasks)
        if extra:
            raise ValueError(f"task_weights for behaviors that are not tasks: {sorted(extra)}")
        if any(w < 0 for w in self.task_weights.values()) or not any(self.weight(t) > 0 for t in self.tasks):
            raise ValueError("task_weights must be >= 0 with at least one task above 0")
        return self

    def weight(self, task: str) -> float:
        return float(self.task_weights.get(task, 1.0))


class MMoE(SASRec):
    """SASRec encoder with behavior input and MMoE heads per behavior (see the module docstring)."""

    name: ClassVar[str] = "mmoe"
    family: ClassVar[str] = "multi-task"
    Params: ClassVar[type[ModelParams]] = MMoEParams
    uses_event_codes: ClassVar[bool] = True

    def __init__(self, n_items: int, params: MMoEParams, n_users: int = 0):
        super().__init__(n_items, params, n_users)
        d, T, K = params.dim, len(params.tasks), params.num_experts
        e = params.expert_dim or d
        self.behavior_emb = nn.Embedding(len(BEHAVIORS) + 1, d, padding_idx=0)
        nn.init.normal_(self.behavior_emb.weight, std=0.02)
        with torch.no_grad():
            self.behavior_emb.weight[0].zero_()
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, e), nn.GELU(), nn.Dropout(params.dropout))
                                      for _ in range(K)])
        self.gates = nn.Linear(d, T * K)  # T gates of K logits, in one matmul
        self.towers = nn.ModuleList([nn.Sequential(nn.Linear(e, d), nn.GELU(), nn.Dropout(params.dropout),
                                                   nn.Linear(d, d)) for _ in range(T)])
        self.register_buffer("task_codes", torch.tensor([behavior_code(t) for t in params.tasks]))
        self.register_buffer("task_weight", torch.tensor([params.weight(t) for t in params.tasks]))
        # Mixture weights of ``encode``: set from the training targets by ``prepare``.
        self.register_buffer("task_prior", self.task_weight / self.task_weight.sum())
        #: Task whose head ``encode`` publishes (None: the mixture); see ``task``.
        self.active_task: str | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.params.tasks)

    def unpack(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Items and behavior codes of packed ``x`` (plain items have code 0: unknown)."""
        return x % (self.n_items + 1), x // (self.n_items + 1)

    # -- data ------------------------------------------------------------------------------------
    def prepare(self, data: SequenceData) -> None:
        """Behavior codes of ``data`` and the mixture weights ``pi_t`` ∝ ``w_t`` x training targets of ``t``."""
        codes = behavior_codes(data)
        starts, ends = data.offsets[:-1] + 1, data.offsets[:-1] + data.train_len  # every trained target
        counts = np.bincount(codes[ragged_positions(starts, ends)], minlength=len(BEHAVIORS) + 1)
        n = torch.as_tensor(counts, dtype=torch.float32, device=self.task_weight.device)[self.task_codes]
        prior = self.task_weight * n
        if prior.sum() <= 0:
            raise DataError(f"no training targets of the tasks {self.tasks} as of {data.day}")
        self.task_prior = prior / prior.sum()

    def training_examples(self, data: SequenceData) -> Tensor:
        """Packed windows (item + behavior) [W, max_len + 1] with at least one target of a task."""
        starts, ends = training_windows(data, self.window_width, self.window_stride)
        packed = pack(data.items, behavior_codes(data), self.n_items)
        w = torch.as_tensor(windows(packed, starts, ends, self.window_width))
        return w[self._task_targets(w).any(1)]

    def _task_targets(self, w: Tensor) -> Tensor:
        """[W, width - 1]: whether each target of packed windows ``w`` is of a task."""
        items, codes = self.unpack(w[:, 1:])
        return (items > 0) & torch.isin(codes, self.task_codes.to(w.device))  # w may be on the CPU still

    def count_targets(self, examples: Tensor) -> int:
        return int(self._task_targets(examples).sum())

    def histories(self, data: SequenceData, rows: np.ndarray, history_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packed histories (the evaluator's hook): the last ``max_len`` events with their behaviors."""
        items, lengths = history_windows(data, rows, history_len, self.params.max_len)
        ends = data.offsets[rows] + history_len
        codes = windows(behavior_codes(data), ends - lengths, ends, self.params.max_len)
        return pack(items, codes, self.n_items), lengths

    # -- the network -----------------------------------------------------------------------------
    def hidden(self, x: Tensor) -> Tensor:
        """Shared encoder states [B, L, dim] of packed (or plain) right-padded events ``x``."""
        items, codes = self.unpack(x)
        L = items.size(1)
        h = self.item_emb(items) * math.sqrt(self.params.dim) + self.pos_emb.weight[:L]
        if self.params.behavior_input:
            h = h + self.behavior_emb(codes)
        h = self.dropout(h)
        # SASRec's stack (models.transformer.SASRec._encode_stack), fed the behavior-aware input.
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=x.device, dtype=h.dtype)
        return self.norm(self.encoder(h, mask=mask, is_causal=True))

    def gate_weights(self, h: Tensor) -> Tensor:
        """Softmax gates [..., T, K] of hidden states ``h`` [..., d]."""
        K = self.params.num_experts
        return self.gates(h).unflatten(-1, (len(self.params.tasks), K)).softmax(-1)

    def task_vectors(self, h: Tensor) -> Tensor:
        """Each task's user vector [..., T, d] from hidden states ``h`` [..., d]."""
        experts = torch.stack([f(h) for f in self.experts], -2)  # [..., K, e]
        mixed = self.gate_weights(h) @ experts  # [..., T, e]
        u = torch.stack([tower(mixed[..., t, :]) for t, tower in enumerate(self.towers)], -2)
        return u + h.unsqueeze(-2) if self.params.residual else u

    def encode(self, history: Tensor, lengths: Tensor, users: Tensor | None = None) -> Tensor:
        """The active task's vector at the last event, else the mixture ``sum_t pi_t u_t``."""
        h = self.hidden(history)
        u = self.task_vectors(h[torch.arange(h.size(0), device=h.device), lengths - 1])  # [B, T, d]
        if self.active_task is not None:
            return u[:, self.tasks.index(self.active_task)]
        return (self.task_prior.to(u.dtype).unsqueeze(-1) * u).sum(1)

    @contextmanager
    def task(self, name: str | None) -> Iterator["MMoE"]:
        """``with model.task('buy'):`` encode and score with that task's head."""
        name = ALIASES.get(name, name) if name is not None else None
        if name is not None and name not in self.tasks:
            raise ValueError(f"{name!r} is not a task of this model ({', '.join(self.tasks)})")
        before, self.active_task = self.active_task, name
        try:
            yield self
        finally:
            self.active_task = before

    def task_losses(self, batch: Tensor) -> dict[str, Tensor]:
        """Per task, the mean next-item loss over the targets of that behavior in ``batch`` (packed
        windows); tasks without a target in the batch are absent."""
        inputs, targets = batch[:, :-1], batch[:, 1:]
        t_items, t_codes = self.unpack(targets)
        u = self.task_vectors(self.hidden(inputs))  # [B, L, T, d]
        out: dict[str, Tensor] = {}
        for t, task in enumerate(self.tasks):  # a handful of tasks; positions are vectorized
            keep = (t_items > 0) & (t_codes == self.task_codes[t])
            if keep.any():
                out[task] = next_item_loss(u[..., t, :][keep], t_items[keep], self.item_embeddings(), self.params)
        return out

    def loss(self, batch: Tensor) -> Tensor:
        """``sum_t w_t L_t`` over the tasks with targets in the batch."""
        losses = self.task_losses(batch)
        if not losses:  # no task target in the batch: a zero that still has a graph
            return self.item_emb.weight.sum() * 0.0
        return sum(self.params.weight(t) * v for t, v in losses.items())

    def extra_repr(self) -> str:
        p = self.params
        return f"{super().extra_repr()}, tasks={p.tasks}, experts={p.num_experts}"


# -- evaluation ----------------------------------------------------------------------------------

def evaluate_tasks(model, data: SequenceData, tasks: list[str] | None = None, *, mask_seen: bool = False,
                   batch_size: int = 512, device: torch.device | str = "cpu") -> dict:
    """Per task, ``models.evaluate.evaluate`` on that task's split (``task_splits``), ranked by the
    task's head when ``model`` is multi-task (a model without that head, e.g. ``pop``, scores as usual).

    Returns ``{task: EvalResult}``; rows of a task are the same for every model on ``data``."""
    from models.evaluate import evaluate

    tasks = [ALIASES.get(t, t) for t in (tasks or getattr(model, "tasks", None) or list(MMoEParams().tasks))]
    out = {}
    for task, split in task_splits(data, tasks).items():
        view = replace(data, splits={task: split}, event_codes=behavior_codes(data))
        heads = getattr(model, "tasks", [])
        ctx = model.task(task) if task in heads else _nothing()
        with ctx:
            out[task] = evaluate(model, view, task, mask_seen=mask_seen, batch_size=batch_size, device=device)
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
