"""Adversarial training of a sequence recommender: IRGAN adapted to next-item prediction.

IRGAN (Wang et al., "IRGAN: A Minimax Game for Unifying Generative and Discriminative Information
Retrieval Models", SIGIR 2017, https://arxiv.org/abs/1705.10513) plays a minimax game between a
discriminator ``D`` that tells relevant items from others and a generator ``G`` that proposes
items ``D`` finds plausible:

    min_G max_D  E_{i ~ p_true(.|q)} [log D(i|q)] + E_{j ~ p_G(.|q)} [log(1 - D(j|q))],
    D(i|q) = sigmoid(f_D(q, i)).

Here the query ``q`` is a history prefix ``x_1..x_t`` (position ``t`` of a training window) and
the relevant item its next event ``x_{t+1}``.

**D is the recommender**: a SASRec (``models.transformer``), ``f_D(t, i) = <u_t, E[i]>``; its user
and item vectors are the published embeddings. D is trained on negatives drawn from G:

- ``loss: bce`` (IRGAN's D loss, one negative per target, as in the SASRec paper):
  ``L_D = - mean_t [log s(f_D(t, x_{t+1})) + log(1 - s(f_D(t, j_t)))]``, ``j_t ~ p_G(.|t)``;
- ``loss: sampled`` (default): softmax over the target and ``K = num_negatives`` negatives
  ``j_1..j_K ~ q(.|t)`` with the logQ correction (Bengio and Senecal 2008; Yi et al., RecSys 2019)

      L_D = - f_D(t, x_{t+1}) + log( exp f_D(t, x_{t+1}) + sum_k exp(f_D(t, j_k) - log(K q(j_k|t))) ),

  whose sum is an importance-sampling estimate of ``sum_{j != x_{t+1}} exp f_D(t, j)``: D then
  minimizes (an estimate of) the full softmax cross-entropy whatever G proposes, and G only decides
  where the estimate spends its samples. Without the correction (``bce``, or
  ``logq_correction: false``) a logistic D trained against negatives from ``q`` learns
  ``f_D ~ log p_true / q`` (noise-contrastive estimation), a ratio that ranks badly once ``q`` is
  sharp: on ml-100k the plain IRGAN setting (``bce``, softplus reward, no entropy) lost more than
  half of the validation NDCG@10 of its base within 12 epochs.

``q`` is G's distribution, mixed with the uniform one: each negative is uniform with probability
``uniform_mix`` (1 during the first ``warmup_steps`` steps), ``q = (1 - a) p_G + a / (N - 1)``.

**G is a light head on D's state**: ``p_G(j|t) = softmax_j(<W sg(u_t), E_G[j]> + b_G[j])`` over
``j in 1..N`` minus the target (a "negative" equal to the target would push it both ways), with
its own item table ``E_G``, bias ``b_G`` and map ``W``, where ``sg`` stops the gradient. Why this
generator: IRGAN's generator is a second model of its discriminator's form; reading D's
(detached) encoding instead of running a second encoder makes G cost one softmax layer (like a
full-softmax loss) rather than another transformer pass, and G cannot move D's encoder. ``W`` and
``b_G`` start at zero, so G starts as the uniform sampler: at step 0 the GAN is its base.

**G's update** is REINFORCE with reward from D. G draws ``K' = max(gen_samples, K)`` items per
target (D's negatives are the first ``K`` of them); a sample's reward is D's score ``R(f_D)``
(``reward: logit`` f_D, ``softplus`` log(1 + exp f_D) as in IRGAN, or ``sigmoid``) plus an entropy
bonus, and its baseline the mean reward of the other samples of the same target (leave-one-out:
unbiased, and per target, so it removes the spread of scores across histories):

    r_{t,k} = sg(R(f_D(t, j_{t,k})) - beta log p_G(j_{t,k}|t)),   b_{t,k} = (sum_l r_{t,l} - r_{t,k}) / (K' - 1),
    L_G = - mean_{t,k} (r_{t,k} - b_{t,k}) log p_G(j_{t,k}|t),

whose gradient is minus the policy gradient of ``E_{p_G}[R(f_D)] + beta H(p_G)`` (``beta =
entropy``). G seeks the items D scores highest among the wrong ones (IRGAN's hard negatives); the
entropy keeps it from collapsing onto a few, and with ``reward: logit`` and ``beta = 1`` its
optimum is ``p_G = softmax(f_D)`` over the non-targets, the proposal under which the sampled
softmax above has zero variance.

**One loss, one optimizer.** The shared trainer minimizes one scalar with one Adam over all
parameters. ``L_D`` reads G's samples as integer indexes and ``q`` under ``sg`` (no gradient to
G), ``L_G`` reads D's state and rewards under ``sg`` (no gradient to D), so the two losses touch
disjoint parameter sets and ``grad (L_D + L_G)`` is ``grad L_D`` on D's parameters and ``grad L_G``
on G's: one Adam step on the sum is one simultaneous step of both players (Adam's update is per
coordinate, so it is exactly two Adams with the same learning rate; for the same reason a weight
on ``L_G`` would change nothing, and there is none). The batch's loss is returned as
``L_D + (L_G - sg(L_G))``: the same gradient, but the value the trainer logs is ``L_D`` (the
surrogate's value means nothing).

``adversary: false`` drops G: negatives are uniform over the non-targets, through the same code
and loss (the comparison base).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from models.base import ModelParams
from models.transformer import SASRec, TransformerParams


class GANParams(TransformerParams):
    #: D's loss: ``sampled`` (softmax over the target and ``num_negatives`` negatives per target,
    #: keep it small) or ``bce`` (one negative per target, IRGAN's and SASRec's paper).
    loss: Literal["bce", "sampled"] = "sampled"  # type: ignore[assignment]
    num_negatives: int = Field(16, ge=1)
    #: ``sampled`` only: subtract ``log(K q(j))`` from a negative's logit (``q``: the proposal that
    #: drew it), so the sampled softmax estimates the full one whatever G is.
    logq_correction: bool = True
    #: ``false``: no generator; negatives uniform over the items other than the target (the base).
    adversary: bool = True
    #: Samples G draws per target for its policy gradient (leave-one-out baseline: at least 2).
    gen_samples: int = Field(4, ge=2)
    #: D's score of a sampled item as G's reward: ``logit`` (f_D), ``softplus`` (log(1 + exp f_D),
    #: IRGAN's) or ``sigmoid``.
    reward: Literal["logit", "softplus", "sigmoid"] = "logit"
    #: Entropy bonus: ``- entropy * log p_G(j)`` is added to the reward (0: IRGAN's generator).
    entropy: float = Field(1.0, ge=0.0)
    #: Probability that one of D's negatives is uniform instead of G's.
    uniform_mix: float = Field(0.0, ge=0.0, le=1.0)
    #: Training steps (batches) with uniform negatives only, while G learns.
    warmup_steps: int = Field(0, ge=0)


class SASRecGAN(SASRec):
    """SASRec as the discriminator of an IRGAN-style game with a negative generator (see the module docstring)."""

    name: ClassVar[str] = "sasrec_gan"
    family: ClassVar[str] = "GAN"
    Params: ClassVar[type[ModelParams]] = GANParams

    def __init__(self, n_items: int, params: GANParams, n_users: int = 0):
        # D is built first, from the same random stream as ``sasrec``: the same seed gives the same D.
        super().__init__(n_items, params, n_users)
        d = params.dim
        # Training steps taken (a buffer, so warm-up continues exactly after a resume).
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        if params.adversary:
            self.gen_proj = nn.Linear(d, d, bias=False)
            self.gen_item = nn.Embedding(n_items + 1, d)
            self.gen_bias = nn.Parameter(torch.zeros(n_items + 1))
            nn.init.zeros_(self.gen_proj.weight)  # G starts uniform (see the module docstring)
            nn.init.normal_(self.gen_item.weight, std=0.02)

    # -- the two players --------------------------------------------------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        return [self.gen_proj.weight, self.gen_item.weight, self.gen_bias] if self.params.adversary else []

    def discriminator_parameters(self) -> list[nn.Parameter]:
        gen = {id(p) for p in self.generator_parameters()}
        return [p for p in self.parameters() if id(p) not in gen]

    def generator_log_probs(self, h: Tensor, targets: Tensor) -> Tensor:
        """log p_G(j | t) [M, N + 1] from D's states ``h`` [M, d] (detached here): padding and each
        row's target get probability 0. Without the adversary: uniform over the other items."""
        if self.params.adversary:
            logits = self.gen_proj(h.detach()) @ self.gen_item.weight.T + self.gen_bias
        else:
            logits = torch.zeros(len(h), self.n_items + 1, device=h.device)
        banned = torch.zeros(logits.shape, dtype=torch.bool, device=h.device)
        banned[:, 0] = True
        banned.scatter_(1, targets.unsqueeze(1), True)
        return F.log_softmax(logits.float().masked_fill(banned, -math.inf), -1)

    def uniform_share(self) -> float:
        """Probability that one of D's negatives is uniform: 1 during warm-up, else ``uniform_mix``."""
        if not self.params.adversary or (self.training and int(self.step) < self.params.warmup_steps):
            return 1.0
        return self.params.uniform_mix

    def discriminator_negatives(self, samples: Tensor, targets: Tensor) -> Tensor:
        """D's negatives [M, K]: G's ``samples``, each replaced with probability ``uniform_share``
        by an item drawn uniformly from those other than the row's target."""
        a = self.uniform_share()
        if a == 0.0 or not self.params.adversary:
            return samples  # without the adversary the "generator" already is the uniform sampler
        # Uniform over 1..N minus the target: draw from N - 1 values and skip the target.
        uniform = torch.randint(1, self.n_items, samples.shape, device=samples.device)
        uniform = uniform + (uniform >= targets.unsqueeze(1)).long()
        if a == 1.0:
            return uniform
        return torch.where(torch.rand(samples.shape, device=samples.device) < a, uniform, samples)

    def adversarial_losses(self, h: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(L_D, L_G)`` for D's states ``h`` [M, d] and next items ``targets`` [M]: L_D moves D's
        parameters only, L_G (the policy-gradient surrogate) G's only (0 without the adversary)."""
        p = self.params
        items = self.item_embeddings()
        n_neg = 1 if p.loss == "bce" else p.num_negatives
        k = max(p.gen_samples, n_neg) if p.adversary else n_neg
        logp = self.generator_log_probs(h, targets)
        with torch.no_grad():
            samples = torch.multinomial(logp.exp(), k, replacement=True)  # [M, K], never 0 or the target
        g_loss = h.new_zeros(())
        if p.adversary:
            taken = logp.gather(1, samples)
            with torch.no_grad():
                f = (h.unsqueeze(1) * items[samples]).sum(-1).float()
                reward = {"logit": f, "softplus": F.softplus(f), "sigmoid": torch.sigmoid(f)}[p.reward]
                reward = reward - p.entropy * taken
                baseline = (reward.sum(1, keepdim=True) - reward) / (k - 1)
            g_loss = -((reward - baseline) * taken).mean()

        neg = self.discriminator_negatives(samples[:, :n_neg], targets)
        pos_logit = (h * items[targets]).sum(-1).float()
        neg_logit = (h.unsqueeze(1) * items[neg]).sum(-1).float()  # [M, n_neg]
        if p.loss == "bce":  # the same terms as ``next_item_loss``'s bce
            d_loss = (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                      + F.binary_cross_entropy_with_logits(neg_logit[:, 0], torch.zeros_like(pos_logit)))
            return d_loss, g_loss
        if p.logq_correction:
            with torch.no_grad():  # the mixture that drew the negatives, over the N - 1 non-targets
                a = self.uniform_share()
                q = (1 - a) * logp.gather(1, neg).exp() + a / (self.n_items - 1)
            neg_logit = neg_logit - torch.log(n_neg * q)
        logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], 1)
        return F.cross_entropy(logits, torch.zeros_like(targets)), g_loss

    # -- the interface ----------------------------------------------------------------------------
    def loss(self, windows: Tensor) -> Tensor:
        """``L_D + (L_G - sg(L_G))``: both players' gradients, D's loss as the value (see the module docstring)."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h = self.hidden(inputs)
        keep = targets > 0
        d_loss, g_loss = self.adversarial_losses(h[keep], targets[keep])
        if self.training:
            self.step += 1
        return d_loss + (g_loss - g_loss.detach())

    def extra_repr(self) -> str:
        p = self.params
        return (super().extra_repr() + f", adversary={p.adversary}, gen_samples={p.gen_samples}, reward={p.reward}, "
                f"uniform_mix={p.uniform_mix}, warmup_steps={p.warmup_steps}")
