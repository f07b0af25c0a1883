"""DDPO (RLHF-V dense DPO on corrections): spec wave2_feedback_safety.md §1.5 worked numbers, the §1.3 token-diff
rule, spans → tokens, the three hyperparameter presets, and `alignkit train --objective ddpo` on tiny-random."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.data.token_diff import changed_token_sets, tokens_in_spans, word_diff_spans
from alignkit.errors import ConfigError
from alignkit.objectives import get_objective
from alignkit.objectives.base import LogProbs
from alignkit.objectives.dense import ddpo_loss, weighted_sequence_logps


def t(x):
    return torch.tensor(x, dtype=torch.float64)


# Spec §1.5, the 4-token toy: C_w = {2, 3}, C_l = {1, 2}.
POL_W, POL_L = [-0.5, -1.0, -2.0, -0.5], [-0.4, -0.8, -0.6, -0.7]
REF_W, REF_L = [-0.6, -1.0, -2.5, -0.9], [-0.4, -0.9, -0.3, -0.7]
CH_W, CH_L = [0, 0, 1, 1], [0, 1, 1, 0]


def toy_logprobs(policy_w=POL_W) -> LogProbs:
    pol = torch.tensor([[policy_w, POL_L]], dtype=torch.float64, requires_grad=True)
    return LogProbs(policy=pol.sum(-1), lengths=t([[4.0, 4.0]]), token_policy=pol,
                    token_reference=t([[REF_W, REF_L]]), token_mask=torch.ones(1, 2, 4, dtype=torch.bool),
                    reference=t([[sum(REF_W), sum(REF_L)]]), extras={"token_weights": t([[CH_W, CH_L]])})


def test_weighted_scores_match_spec() -> None:
    w = 1 + 4 * t(CH_W)
    assert float(weighted_sequence_logps(t(POL_W), torch.ones(4, dtype=torch.bool), w, True)) == pytest.approx(
        -1.166667, abs=1e-6)
    w_l = 1 + 4 * t(CH_L)
    assert float(weighted_sequence_logps(t(REF_L), torch.ones(4, dtype=torch.bool), w_l, True)) == pytest.approx(
        -0.591667, abs=1e-6)


@pytest.mark.parametrize("args, expected", [
    ({}, 0.583271),  # the paper set is the default: γ = 5, β = 0.5, normalised
    ({"preset": "paper"}, 0.583271),
    ({"preset": "rlhfv_release"}, 0.629791),  # γ = 1.1, β = 0.1, summed
    ({"gamma": 1.0, "beta": 0.1, "normalize": False}, 0.634946),  # = plain DPO
])
def test_ddpo_worked_numbers(args: dict, expected: float) -> None:
    loss, metrics = get_objective("ddpo")(toy_logprobs(), **args)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert metrics["changed_fraction"] == pytest.approx(4 / 8)


def test_muffin_defaults_preset_is_gamma3_summed() -> None:
    # γ = 3, β = 0.5, summed: Ŝ_θ(w) = -0.5-1-6-1.5 = -9, Ŝ_θ(l) = -0.4-2.4-1.8-0.7 = -5.3,
    # Ŝ_ref(w) = -0.6-1-7.5-2.7 = -11.8, Ŝ_ref(l) = -0.4-2.7-0.9-0.7 = -4.7; h = -3.7 + 7.1 = 3.4.
    loss, _ = get_objective("ddpo")(toy_logprobs(), preset="muffin_defaults")
    assert float(loss) == pytest.approx(math.log1p(math.exp(-0.5 * 3.4)), abs=1e-9)


def test_gamma_one_equals_dpo_summed_and_mean() -> None:
    lp = toy_logprobs()
    dpo_sum, _ = get_objective("dpo")(lp, beta=0.1)
    ddpo_sum, _ = get_objective("ddpo")(lp, gamma=1.0, beta=0.1, normalize=False)
    assert float(ddpo_sum) == pytest.approx(float(dpo_sum), abs=1e-12)
    mean_lp = LogProbs(policy=lp.policy / 4, lengths=lp.lengths, reference=lp.reference / 4)
    dpo_mean, _ = get_objective("dpo")(mean_lp, beta=0.5)
    ddpo_mean, _ = get_objective("ddpo")(lp, gamma=1.0, beta=0.5, normalize=True)
    assert float(ddpo_mean) == pytest.approx(float(dpo_mean), abs=1e-12)


def test_gradient_on_changed_token_is_gamma_times_unchanged() -> None:
    lp = toy_logprobs()
    loss, _ = get_objective("ddpo")(lp, gamma=5.0, beta=0.5, normalize=False)
    loss.backward()
    g = lp.token_policy.grad[0, 0]
    assert float(g[2]) == pytest.approx(5 * float(g[0]), rel=1e-12)
    assert float(g[0]) == pytest.approx(float(g[1]), rel=1e-12)


def test_padding_gets_no_weight() -> None:
    mask = torch.tensor([True, True, False])
    # A weight of 5 on a padded position must not count, in the sum or in the normaliser.
    assert float(weighted_sequence_logps(t([-1.0, -2.0, -9.0]), mask, t([1.0, 5.0, 5.0]), True)) == pytest.approx(
        -11 / 6)
    pol = torch.randn(2, 5, dtype=torch.float64)
    losses, _, _ = ddpo_loss(pol, pol, pol, pol, torch.ones(2, 5), torch.ones(2, 5), torch.ones(2, 5),
                             torch.ones(2, 5), 0.5)
    assert torch.allclose(losses, torch.full((2,), math.log(2), dtype=torch.float64))


def test_unknown_preset_is_clear() -> None:
    with pytest.raises(ConfigError, match="preset must be one of"):
        get_objective("ddpo")(toy_logprobs(), preset="nope")


def test_token_diff_rule_spec_example() -> None:
    cw, cl = changed_token_sets([5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 20, 21, 10, 11, 12, 30])
    assert cl == {3, 4} and cw == {3, 4}  # 30 is a pure insertion: weight 1
    cw, cl = changed_token_sets([5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 20, 21, 10, 11, 12, 30],
                                weight_pure_insertions=True)
    assert cw == {3, 4, 8} and cl == {3, 4}


def test_token_diff_min_match_and_identical() -> None:
    assert changed_token_sets([1, 2, 3, 4], [1, 2, 3, 4]) == (set(), set())
    # The shared "9" is a 1-token match (< 3): discarded, so [8, 9, 8] vs [7, 9, 7] is one replaced gap.
    cw, cl = changed_token_sets([1, 2, 3, 8, 9, 8, 4, 5, 6], [1, 2, 3, 7, 9, 7, 4, 5, 6])
    assert cw == {3, 4, 5} and cl == {3, 4, 5}
    cw, cl = changed_token_sets([1, 2, 3, 8, 9, 8, 4, 5, 6], [1, 2, 3, 7, 9, 7, 4, 5, 6], min_match_size=1)
    assert cw == {3, 5} and cl == {3, 5}
    # A pure deletion keeps weight 1.
    assert changed_token_sets([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 5, 6, 7]) == (set(), set())


def test_spans_overlap_offsets() -> None:
    offsets = [(0, 5), (5, 9), (9, 12), (12, 12)]
    assert tokens_in_spans(offsets, [(6, 10)]) == {1, 2}
    assert tokens_in_spans(offsets, [(5, 6)]) == {1}
    assert word_diff_spans("There are three mugs", "There are two mugs") == ([(10, 13)], [(10, 15)])
    assert word_diff_spans("a big red cat sat", "a small blue cat sat") == ([(2, 12)], [(2, 9)])


def _write_corrections(path) -> None:
    rows = [
        {"prompt": "Describe the kitchen.", "rejected": "There are three mugs on the counter and a red kettle.",
         "chosen": "There are two mugs on the counter and a red kettle.",
         "rejected_spans": [[10, 15]], "chosen_spans": [[10, 13]]},
        {"prompt": "What colour is the sky?", "rejected": "The sky is green on a clear day.",
         "chosen": "The sky is blue on a clear day."},
        {"prompt": "Name a fruit.", "rejected": "A carrot is a fruit.", "chosen": "An apple is a fruit."},
        {"prompt": "How many legs has a cat?", "rejected": "A cat has six legs.", "chosen": "A cat has four legs."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_train_ddpo_tiny(tmp_path, capsys) -> None:
    data = tmp_path / "corrections.jsonl"
    _write_corrections(data)
    run = tmp_path / "run"
    rc = main(["train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "ddpo",
               "--output-dir", str(run), "--set", "max_steps=2", "--set", "batch_size=2", "--set", "lr=1e-3",
               "--set", "progress=false", "--set", "objective_args.preset=rlhfv_release"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ddpo train: 1 pairs by spans, 3 by token diff" in out
    assert "reference: separate" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(r["loss"]) for r in losses)
    # At step 1 the policy is the reference: h = 0, so the loss is log 2 and some tokens are weighted.
    assert losses[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert 0 < losses[0]["changed_fraction"] < 0.5


def test_cli_train_ddpo_spans_required(tmp_path, capsys) -> None:
    data = tmp_path / "corrections.jsonl"
    _write_corrections(data)
    rc = main(["train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "ddpo",
               "--output-dir", str(tmp_path / "run"), "--set", "max_steps=1", "--set", "progress=false",
               "--set", "objective_args.diff_mode=spans"])
    assert rc != 0
    assert "diff_mode=spans but the record has no chosen_spans" in capsys.readouterr().err
