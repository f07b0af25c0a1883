"""Parity with TRL 1.16 at the loss level: the same log-prob inputs through TRL's own loss code and through
alignkit's objectives must give the same loss (1e-5).

TRL computes DPO/KTO losses inside `_compute_loss(self, model, inputs, ...)` methods. We call them unbound with a
`SimpleNamespace` standing in for the trainer (only the fields those methods read) and a fake model whose
per-token log-probs sum to the chosen S_θ values, with precomputed reference log-probs; no network, no weights.
ORPO and SimPO come from `trl.experimental` (`odds_ratio_loss`, `cpo_loss`), which take log-probs directly.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from alignkit.objectives import LogProbs, get_objective

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import trl  # noqa: E402
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.kto_trainer import KTOTrainer  # noqa: E402

D = torch.float64
TOL = 1e-5


def test_trl_version_is_the_one_parity_was_written_against() -> None:
    assert trl.__version__.startswith("1.16"), trl.__version__


def _accelerator() -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x)


class _FakeLM:
    """Returns the fused-head outputs TRL reads: per-token log-probs (shifted, zero outside the completion)."""

    training = True

    def __init__(self, per_token: torch.Tensor) -> None:
        self.per_token = per_token

    def __call__(self, **_: object) -> SimpleNamespace:
        z = torch.zeros_like(self.per_token)
        return SimpleNamespace(log_probs=self.per_token, entropy=z, mean_logits=z,
                               is_top1=torch.zeros_like(z, dtype=torch.bool))


def _sequences(summed: torch.Tensor, lengths: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Rows with one prompt token then `lengths` completion tokens whose log-probs sum to `summed`."""
    n, width = len(summed), int(lengths.max()) + 2
    completion_mask = torch.zeros(n, width, dtype=torch.long)
    per_token = torch.zeros(n, width - 1, dtype=D)
    for i, (s, length) in enumerate(zip(summed.tolist(), lengths.long().tolist(), strict=True)):
        completion_mask[i, 1:1 + length] = 1
        per_token[i, :length] = s / length
    inputs = {"input_ids": torch.ones(n, width, dtype=torch.long), "attention_mask": torch.ones(n, width, dtype=torch.long),
              "completion_mask": completion_mask}
    return inputs, per_token


def _random_pairs(seed: int, b: int = 6) -> LogProbs:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (b, 2), generator=g).to(D)
    policy = -lengths * (0.5 + 2 * torch.rand(b, 2, generator=g, dtype=D))
    reference = policy + torch.randn(b, 2, generator=g, dtype=D) * 3
    return LogProbs(policy=policy, lengths=lengths, reference=reference)


def _trl_dpo_loss(lp: LogProbs, loss_type: str, beta: float, label_smoothing: float = 0.0,
                  discopop_tau: float = 0.05) -> float:
    summed = torch.cat([lp.policy[:, 0], lp.policy[:, 1]])
    lengths = torch.cat([lp.lengths[:, 0], lp.lengths[:, 1]])
    inputs, per_token = _sequences(summed, lengths)
    inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = lp.reference[:, 0], lp.reference[:, 1]
    model = _FakeLM(per_token)
    fake = SimpleNamespace(
        model=model, accelerator=_accelerator(), precompute_ref_logps=True, ld_alpha=None,
        f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=beta,
        label_smoothing=label_smoothing, args=SimpleNamespace(discopop_tau=discopop_tau), use_weighting=False,
        aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    return float(DPOTrainer._compute_loss(fake, model, inputs, return_outputs=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss_type,name,kw", [
    ("sigmoid", "dpo", {"beta": 0.1}),
    ("sigmoid", "dpo", {"beta": 0.5}),
    ("robust", "robust", {"beta": 0.1, "label_smoothing": 0.1}),
    ("robust", "robust", {"beta": 0.2, "label_smoothing": 0.3}),
    ("ipo", "ipo", {"beta": 0.1}),
    ("hinge", "hinge", {"beta": 0.1}),
    ("nca_pair", "nca", {"beta": 0.1}),
    ("bco_pair", "bco_pair", {"beta": 0.1, "use_shift": False}),
    ("apo_zero", "apo_zero", {"beta": 0.1}),
    ("sppo_hard", "sppo_hard", {"beta": 0.1}),
    ("discopop", "discopop", {"beta": 0.1, "tau": 0.05}),
])
def test_dpo_loss_types_match_trl(seed: int, loss_type: str, name: str, kw: dict) -> None:
    lp = _random_pairs(seed)
    trl_kw = {"beta": kw["beta"], "label_smoothing": kw.get("label_smoothing", 0.0)}
    if "tau" in kw:
        trl_kw["discopop_tau"] = kw["tau"]
    expected = _trl_dpo_loss(lp, loss_type, **trl_kw)
    ours = float(get_objective(name)(lp, **kw)[0])
    assert ours == pytest.approx(expected, abs=TOL)


def test_dpo_metrics_match_trl_rewards() -> None:
    lp = _random_pairs(5)
    _, m = get_objective("dpo")(lp, beta=0.1)
    rho = lp.policy - lp.reference
    assert m["rewards/chosen"] == pytest.approx(float(0.1 * rho[:, 0].mean()), abs=1e-6)
    assert m["rewards/margin"] == pytest.approx(float(0.1 * (rho[:, 0] - rho[:, 1]).mean()), abs=1e-6)
    assert m["rewards/accuracy"] == pytest.approx(float((rho[:, 0] > rho[:, 1]).double().mean()), abs=1e-6)


def _trl_kto_loss(lp: LogProbs, loss_type: str, beta: float, desirable_weight: float,
                  undesirable_weight: float) -> float:
    labels = lp.labels.reshape(-1)
    inputs, per_token = _sequences(lp.policy[:, 0], lp.lengths[:, 0])
    calculate_kl = loss_type == "kto"
    inputs.update(label=labels, ref_logps=lp.reference[:, 0])
    if calculate_kl:
        inputs["ref_KL_logps"] = lp.extras["kl_reference"]
    model = _FakeLM(per_token)
    fake = SimpleNamespace(
        model=model, accelerator=_accelerator(), precompute_ref_logps=True, calculate_KL=calculate_kl,
        loss_type=loss_type, beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight,
        aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
        _compute_kl_logps=lambda _model, _batch: lp.extras["kl_policy"] if calculate_kl else None)
    return float(KTOTrainer._compute_loss(fake, model, inputs, return_outputs=False))


def _random_unpaired(seed: int, labels: list[bool]) -> LogProbs:
    g = torch.Generator().manual_seed(seed)
    b = len(labels)
    lengths = torch.randint(1, 9, (b, 1), generator=g).to(D)
    policy = -lengths * (0.5 + torch.rand(b, 1, generator=g, dtype=D))
    reference = policy + torch.randn(b, 1, generator=g, dtype=D) * 3
    kl_policy = -5 * torch.rand(b, generator=g, dtype=D)
    kl_reference = kl_policy - torch.randn(b, generator=g, dtype=D)
    return LogProbs(policy=policy, lengths=lengths, reference=reference, labels=torch.tensor(labels).reshape(b, 1),
                    extras={"kl_policy": kl_policy, "kl_reference": kl_reference})


@pytest.mark.parametrize("labels", [[True, False, True, False, False], [True, True, True], [False, False],
                                    [True, False]])
@pytest.mark.parametrize("loss_type,name", [("kto", "kto"), ("apo_zero_unpaired", "apo_zero_unpaired")])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.33)])
def test_kto_family_matches_trl(labels: list[bool], loss_type: str, name: str, weights: tuple[float, float]) -> None:
    for seed in range(3):
        lp = _random_unpaired(seed, labels)
        kw = {"beta": 0.1, "desirable_weight": weights[0], "undesirable_weight": weights[1]}
        expected = _trl_kto_loss(lp, loss_type, **kw)
        assert float(get_objective(name)(lp, **kw)[0]) == pytest.approx(expected, abs=TOL)


def test_kto_zero_clamp_matches_trl() -> None:
    lp = _random_unpaired(0, [True, False, True])
    lp.extras["kl_reference"] = lp.extras["kl_policy"] + 2.0  # negative KL estimate → z₀ clamps to 0
    kw = {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}
    assert float(get_objective("kto")(lp, **kw)[0]) == pytest.approx(_trl_kto_loss(lp, "kto", **kw), abs=TOL)


def _avg_pairs(seed: int) -> LogProbs:
    lp = _random_pairs(seed)
    return LogProbs(policy=lp.policy, lengths=lp.lengths)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.1, 0.25])
def test_orpo_odds_ratio_matches_trl_experimental(seed: int, beta: float) -> None:
    lp = _avg_pairs(seed)
    a = lp.policy / lp.lengths
    fake = SimpleNamespace(beta=beta, accelerator=_accelerator())
    losses, *_ = ORPOTrainer.odds_ratio_loss(fake, a[:, 0], a[:, 1])
    # TRL: loss = nll − mean(β·log σ(ℓ)); with sft_weight = 0 ours is the odds-ratio part alone
    ours = float(get_objective("orpo")(lp, beta=beta, sft_weight=0.0)[0])
    assert ours == pytest.approx(float(-losses.mean()), abs=TOL)


def _orpo_logits(summed: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Two-token-vocabulary logits: every position predicts token 1 with log-prob S/|y| (0 elsewhere is padding)."""
    logits = torch.zeros(len(summed), width, 2, dtype=D)
    for i, (s, n) in enumerate(zip(summed.tolist(), lengths.long().tolist(), strict=True)):
        # log softmax([x, 0])[1] = −log(1 + eˣ) = s/n  ⇔  x = log(e^{−s/n} − 1)
        logits[i, :n, 0] = math.log(math.expm1(-s / n))
    return logits


def _trl_orpo_total(lp: LogProbs, beta: float) -> tuple[float, dict[str, float]]:
    """TRL's whole ORPO loss (`get_batch_loss_metrics`: its own NLL over the chosen tokens + odds-ratio term).

    Each row is a one-token prompt then |y| completion tokens, so TRL's prompt-inclusive NLL (its labels are the
    shifted input ids) covers exactly the completion tokens alignkit scores."""
    b, width = lp.policy.shape[0], int(lp.lengths.max()) + 1
    batch: dict[str, torch.Tensor] = {}
    for col, side in enumerate(("chosen", "rejected")):
        n = lp.lengths[:, col].long()
        mask = (torch.arange(width).unsqueeze(0) <= n.unsqueeze(1)).long()
        batch[f"{side}_input_ids"] = mask.clone()  # token 1 where real, pad id 0 elsewhere
        batch[f"{side}_attention_mask"] = mask
        batch[f"{side}_labels"] = torch.where(mask.bool(), 1, -100).index_fill(1, torch.tensor([0]), -100)
    logits = torch.cat([_orpo_logits(lp.policy[:, c], lp.lengths[:, c], width) for c in (0, 1)])

    def model(input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        assert input_ids.shape == (2 * b, width)
        return SimpleNamespace(logits=logits)

    fake = SimpleNamespace(beta=beta, accelerator=_accelerator(), is_encoder_decoder=False, padding_value=0,
                           aux_loss_enabled=False, concatenated_inputs=ORPOTrainer.concatenated_inputs,
                           get_batch_logps=ORPOTrainer.get_batch_logps)
    fake.odds_ratio_loss = lambda c, r: ORPOTrainer.odds_ratio_loss(fake, c, r)
    fake.concatenated_forward = lambda m, bt: ORPOTrainer.concatenated_forward(fake, m, bt)
    loss, metrics = ORPOTrainer.get_batch_loss_metrics(fake, model, batch)
    return float(loss), metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.1, 0.25])
def test_orpo_whole_loss_matches_trl_with_unequal_chosen_lengths(seed: int, beta: float) -> None:
    lp = _avg_pairs(seed)
    lp.lengths[:, 0] = torch.tensor([1.0, 7.0, 2.0, 5.0, 3.0, 8.0], dtype=D)  # unequal: token ≠ example mean
    lp.policy[:, 0] = -lp.lengths[:, 0] * torch.tensor([0.3, 2.0, 0.9, 1.5, 0.5, 2.5], dtype=D)
    expected, trl_metrics = _trl_orpo_total(lp, beta)
    loss, metrics = get_objective("orpo")(lp, beta=beta)
    assert float(loss) == pytest.approx(expected, abs=TOL)
    assert metrics["nll_loss"] == pytest.approx(trl_metrics["nll_loss"], abs=TOL)
    # the per-example mean (the option) is a different number on these lengths
    per_example = float(get_objective("orpo")(lp, beta=beta, nll_reduction="example")[0])
    assert abs(per_example - expected) > 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 0.5, 0.0), (2.5, 1.375, 0.0), (2.0, 0.5, 0.1)])
def test_simpo_matches_trl_experimental_cpo(seed: int, beta: float, gamma: float, eps: float) -> None:
    lp = _avg_pairs(seed)
    a = lp.policy / lp.lengths
    fake = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=eps,
                           accelerator=_accelerator())
    losses, _, _ = CPOTrainer.cpo_loss(fake, a[:, 0], a[:, 1])
    ours = float(get_objective("simpo")(lp, beta=beta, gamma=gamma, label_smoothing=eps)[0])
    assert ours == pytest.approx(float(losses.mean()), abs=TOL)
