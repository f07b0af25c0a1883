"""Weak-to-strong: the auxiliary confidence loss (objective `w2s_confidence`) and PGR, against
wave2_feedback_safety.md §9.5, plus `alignkit safety w2s` on tiny random models."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.objectives import get_objective
from alignkit.objectives._common import ObjectiveState
from alignkit.objectives.base import LogProbs
from alignkit.objectives.w2s import aux_alpha, logconf_loss
from alignkit.safety.w2s import performance_gap_recovered, pgr_ci

LOGITS = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
WEAK = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)


def test_logconf_reproduces_the_worked_example() -> None:
    loss, info = logconf_loss(LOGITS, WEAK, 1.0)
    assert float(loss.detach()) == pytest.approx(0.454049, abs=1e-6)
    assert info["threshold"] == pytest.approx(0.445700, abs=1e-6)
    assert info["hard"].tolist() == [0, 0, 1, 1]
    assert info["target"].flatten().tolist() == pytest.approx([0.95, 0.05, 0.65, 0.35, 0.30, 0.70, 0.10, 0.90])


def test_zero_aux_coef_is_soft_label_cross_entropy() -> None:
    loss, _ = logconf_loss(LOGITS, WEAK, 1.0, aux_coef=0.0)
    assert float(loss) == pytest.approx(0.647799, abs=1e-6)


def test_threshold_follows_the_weak_prior_not_one_half() -> None:
    # weak labels say class 1 for 3 of 4 rows: only the single most class-0 row is hardened to class 0, although
    # the strong model gives class 0 more than 0.5 on three rows
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    weak = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    _, info = logconf_loss(logits, weak, 1.0)
    assert info["hard"].tolist() == [0, 1, 1, 1]


def test_alpha_schedule_step_and_smooth() -> None:
    assert aux_alpha(0.05) == pytest.approx(0.025)  # f · α_max inside the warm-up (the code)
    assert aux_alpha(0.1) == pytest.approx(0.05)
    assert aux_alpha(0.11) == pytest.approx(0.5)  # then a jump to α_max
    assert aux_alpha(0.05, ramp="smooth") == pytest.approx(0.25)
    assert aux_alpha(0.5, ramp="smooth") == pytest.approx(0.5)


def test_registered_objective_counts_calls_for_the_warm_up() -> None:
    spec = get_objective("w2s_confidence")
    assert spec.data_kind == "listwise" and not spec.needs_reference
    lp = LogProbs(policy=LOGITS.clone().requires_grad_(), lengths=torch.ones(4, 2), scores=WEAK * 3)  # unnormalised
    state = ObjectiveState()
    loss0, m0 = spec(lp, state=state, total_calls=20)
    assert m0["w2s/step_frac"] == 0.0 and m0["w2s/alpha"] == 0.0
    assert float(loss0.detach()) == pytest.approx(0.647799, abs=1e-6)  # α = 0 at the first call
    loss0.backward()
    assert lp.policy.grad is not None and torch.isfinite(lp.policy.grad).all()
    for _ in range(9):
        spec(lp, state=state, total_calls=20)
    _, m = spec(lp, state=state, total_calls=20)
    assert m["w2s/step_frac"] == pytest.approx(0.5) and m["w2s/alpha"] == pytest.approx(0.5)
    state.frozen = True
    spec(lp, state=state, total_calls=20)
    assert state["calls"] == 11.0  # evaluation calls do not advance the schedule
    loss, _ = spec(lp)  # no state: α_max throughout
    assert float(loss.detach()) == pytest.approx(0.454049, abs=1e-6)


def test_pgr_worked_example_and_sign_convention() -> None:
    assert performance_gap_recovered(0.60, 0.70, 0.80) == pytest.approx(0.5)
    # toxicity (lower is better): weak 0.30, strong 0.25, ceiling 0.20 → half the gap recovered
    assert performance_gap_recovered(0.30, 0.25, 0.20, lower_is_better=True) == pytest.approx(0.5)
    assert performance_gap_recovered(0.30, 0.35, 0.20, lower_is_better=True) == pytest.approx(-0.5)
    assert math.isnan(performance_gap_recovered(0.6, 0.7, 0.6005))


def test_pgr_interval_over_test_items() -> None:
    n = 100
    weak = [1.0] * 60 + [0.0] * 40
    strong = [1.0] * 70 + [0.0] * 30
    ceiling = [1.0] * 80 + [0.0] * 20
    est = pgr_ci(weak, strong, ceiling, n_resamples=500)
    assert est.value == pytest.approx(0.5) and est.n == n
    assert est.low <= 0.5 <= est.high and est.high > est.low


def test_cli_w2s_on_tiny_models(tmp_path) -> None:
    from alignkit.cli import main

    data = tmp_path / "cls.jsonl"
    assert main(["safety", "data", "classify", "--n", "40", "--out", str(data)]) == 0
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 40 and sum(r["label"] for r in rows) == 20
    out = tmp_path / "w2s"
    assert main(["safety", "w2s", "--data", str(data), "--weak-model", "tiny-random:1:32", "--strong-model",
                 "tiny-random:2:32", "--out-dir", str(out), "--set", "epochs=1", "--set", "batch_size=8",
                 "--set", "max_length=96"]) == 0
    report = json.loads((out / "w2s.json").read_text())
    assert set(report["accuracy"]) == {"weak", "strong_w2s", "strong_naive", "strong_ceiling"}
    assert report["n"] == {"t1": 16, "t2": 16, "test": 8}
    assert set(report["pgr"]) == {"w2s", "naive"} and "low" in report["pgr"]["w2s"]
    weak_rows = [json.loads(line) for line in (out / "weak_labels.jsonl").read_text().splitlines()]
    assert len(weak_rows) == 16 and all(sum(r["weak_probs"]) == pytest.approx(1.0) for r in weak_rows)
