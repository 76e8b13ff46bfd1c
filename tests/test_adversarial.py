"""SASRec trained against a negative generator (models/adversarial.py): the generator's samples,
the split of gradients between the two players, determinism, the base it reduces to, and ml-100k."""

from __future__ import annotations

import torch

from models.adversarial import SASRecGAN
from models.evaluate import evaluate
from models.registry import FAMILIES, METHODS, method_config
from models.registry import build
from models.trainer import train
from tests.test_models import crafted

SMALL = {"dim": 16, "max_len": 8}


def _gan(n_items: int = 30, seed: int = 0, **model) -> SASRecGAN:
    mc = method_config("sasrec_gan", {"model": {**SMALL, **model}, "train": {"seed": seed}})
    return build(mc, n_items)


def _batch() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9], [4, 5, 6, 0, 0, 0, 0, 0, 0], [30, 1, 2, 3, 0, 0, 0, 0, 0]])


def _states(model: SASRecGAN) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _batch()
    h = model.hidden(batch[:, :-1])
    keep = batch[:, 1:] > 0
    return h[keep], batch[:, 1:][keep]


def test_registered_in_the_gan_family():
    assert METHODS["sasrec_gan"] is SASRecGAN and FAMILIES["sasrec_gan"] == "GAN"
    assert method_config("sasrec_gan", sets=["model.uniform_mix=0.5"]).params().uniform_mix == 0.5


def test_generator_samples_are_items_never_padding_nor_the_target():
    torch.manual_seed(0)
    model = _gan()
    with torch.no_grad():  # a generator far from uniform, favouring padding and item 1 (a target) if allowed
        model.gen_proj.weight.normal_()
        model.gen_bias[:2] = 10.0
    h, targets = _states(model)
    logp = model.generator_log_probs(h, targets)
    assert torch.allclose(logp.exp().sum(1), torch.ones(len(h)))
    assert torch.all(logp[:, 0] == -torch.inf)
    assert torch.all(logp.gather(1, targets.unsqueeze(1)) == -torch.inf)
    samples = torch.multinomial(logp.exp(), 500, replacement=True)
    assert samples.min() >= 1 and samples.max() <= 30
    assert not (samples == targets.unsqueeze(1)).any()
    # and the negatives D trains on come from there
    d_loss, g_loss = model.adversarial_losses(h, targets)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)


def test_each_loss_moves_only_its_own_player():
    model = _gan()
    with torch.no_grad():  # W starts at 0, where E_G gets no gradient yet: move it off
        model.gen_proj.weight.normal_(std=0.1)
    d_params, g_params = model.discriminator_parameters(), model.generator_parameters()
    assert len(g_params) == 3 and not {id(p) for p in d_params} & {id(p) for p in g_params}
    assert len(d_params) + len(g_params) == len(list(model.parameters()))

    def grads(loss: torch.Tensor) -> tuple[list[bool], list[bool]]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        nonzero = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in (*d_params, *g_params)]
        return nonzero[: len(d_params)], nonzero[len(d_params):]

    torch.manual_seed(1)
    d_loss, _ = model.adversarial_losses(*_states(model))
    d_moves, g_moves = grads(d_loss)
    assert any(d_moves) and not any(g_moves)
    torch.manual_seed(1)
    _, g_loss = model.adversarial_losses(*_states(model))
    d_moves, g_moves = grads(g_loss)
    assert not any(d_moves) and all(g_moves)
    # The trainer's scalar: D's loss as its value, the sum's gradient.
    torch.manual_seed(1)
    d_loss, g_loss = model.adversarial_losses(*_states(model))
    torch.manual_seed(1)
    total = model.loss(_batch())
    assert torch.allclose(total, d_loss)
    sum_grads = torch.autograd.grad(d_loss + g_loss, [*d_params, *g_params], allow_unused=True)
    torch.manual_seed(1)
    loss_grads = torch.autograd.grad(model.loss(_batch()), [*d_params, *g_params], allow_unused=True)
    for a, b in zip(sum_grads, loss_grads):
        assert (a is None and b is None) or torch.allclose(a, b)


def test_at_initialisation_the_gan_is_its_base():
    """G starts uniform, so the first step of ``sasrec_gan`` is the first step of its base."""
    gan, base = _gan(seed=5), _gan(seed=5, adversary=False)
    assert base.generator_parameters() == [] and len(gan.generator_parameters()) == 3
    own = gan.state_dict()
    for k, a in base.state_dict().items():
        assert torch.equal(a, own[k]), k  # same seed, same D
    torch.manual_seed(3)
    expected = base.loss(_batch())
    torch.manual_seed(3)
    assert torch.equal(gan.loss(_batch()), expected)


def test_warmup_then_generator_negatives_mixed_with_uniform():
    samples, targets = torch.full((200, 1), 7), torch.full((200,), 3)
    model = _gan(warmup_steps=2).train()
    warm = model.discriminator_negatives(samples, targets)
    assert (warm != 7).any() and not (warm == 3).any()  # warm-up: uniform over the non-targets
    model.step.fill_(2)
    assert torch.equal(model.discriminator_negatives(samples, targets), samples)  # then G's
    mixed = _gan(uniform_mix=0.5).discriminator_negatives(samples, targets)
    assert 0.2 < (mixed != 7).float().mean() < 0.8
    assert mixed.min() >= 1 and mixed.max() <= 30 and not (mixed == 3).any()


def test_logq_correction_makes_uniform_negatives_estimate_the_full_softmax():
    """With uniform negatives over the N - 1 non-targets, exp of the corrected negatives' logits
    averages to the full softmax's denominator (less the target), so the loss is close to the full
    cross-entropy (a little under it on average: log is concave)."""
    model = _gan(adversary=False, num_negatives=64).eval()
    h, targets = _states(model)
    with torch.no_grad():
        h = h * 30  # sharp scores, where uncorrected sampled softmax would be far off
        logits = h @ model.item_embeddings().T
        logits[:, 0] = -torch.inf
        full = torch.nn.functional.cross_entropy(logits, targets)
        torch.manual_seed(0)
        sampled = torch.stack([model.adversarial_losses(h, targets)[0] for _ in range(50)]).mean()
    assert abs(sampled - full) < 0.1, (float(full), float(sampled))


def _train(tmp_path, data, epochs: int, **model):
    mc = method_config("sasrec_gan", {"model": {"dim": 16, "max_len": 10, **model},
                                      "train": {"epochs": epochs, "batch_size": 8, "patience": 50, "lr": 0.01}})
    m = build(mc, data.n_items)
    folder = tmp_path / "models" / "sasrec_gan" / mc.version(data.day)
    return m, train(m, data, mc, folder, echo=lambda _: None, progress=False)


def test_training_is_deterministic_and_learns_the_cycle(tmp_path):
    data = crafted()
    m1, r1 = _train(tmp_path / "a", data, 8)
    m2, r2 = _train(tmp_path / "b", data, 8)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert r1.best_valid_ndcg == r2.best_valid_ndcg and int(m1.step) > 0
    assert evaluate(m1, data, "test").mean()[("hr", 10)] > 0.9
    # G learned something: it is no longer the uniform sampler it started as.
    assert m1.gen_proj.weight.abs().sum() > 0


def test_sasrec_gan_on_ml100k_beats_popularity(movielens_wh):
    from pipelines.modeling.data import latest_day, load
    from pipelines.modeling.train import train_method
    from pipelines.core.config import load_config

    cfg = load_config(warehouse=movielens_wh)
    day = latest_day(movielens_wh)
    data = load(movielens_wh, day, "loo")
    _, pop_rows = train_method(cfg, "pop", day, data=data, echo=lambda _: None)
    result, rows = train_method(cfg, "sasrec_gan", day, data=data, echo=lambda _: None,
                                sets=["model.dim=32", "model.num_layers=1", "train.epochs=4", "train.lr=0.003",
                                      "train.seed=1"])
    losses = [r["loss"] for r in result.log]
    assert losses[-1] < losses[0], losses
    hr = {(r["method"], r["split"]): r["value"] for r in [*pop_rows, *rows] if r["metric"] == "hr" and r["k"] == 10}
    assert hr[("sasrec_gan", "test")] > hr[("pop", "test")], hr
