"""SteerLM (attribute-conditioned SFT) and SteerLM 2.0: spec wave2_selfalign_merge.md §7 worked numbers, the
attribute string and its slot, the builders, the steerability check, and CLI build + train on tiny-random."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.data.build import SamplingSettings, SteerLM2Builder, items_from_prompts
from alignkit.data.records import ScoredExample
from alignkit.data.steerlm import attribute_log_likelihood, attribute_string, steerlm_sft, with_attributes
from alignkit.decode.sampler import Compute, Sample
from alignkit.evaluate.attribute_steering import attribute_steering_check
from alignkit.objectives import get_objective
from alignkit.objectives.base import LogProbs
from alignkit.rewards.base import RewardResult


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_steerlm2_worked_numbers() -> None:
    l_a, l_p, l_q = [-0.5, -2, -1, -3], [-20, -18, -25, -15], [-19, -17, -24, -16]
    scores = [a + p - q for a, p, q in zip(l_a, l_p, l_q, strict=True)]
    lp = LogProbs(policy=t([[-19.5, -16.5, -24.5, -15.5]]), lengths=t([[10.0, 8.0, 12.0, 6.0]]),
                  reference=t([l_q]), scores=t([scores]))
    loss, metrics = get_objective("steerlm2")(lp)
    assert float(loss) == pytest.approx(0.206728, abs=1e-6)
    assert metrics["kl_target_baseline"] == pytest.approx(0.389065, abs=1e-5)


def test_steerlm2_gradient_is_weight_gap_and_padding_ignored() -> None:
    pol = t([[-19.5, -16.5, -24.5, -15.5, 0.0]]).requires_grad_(True)
    lp = LogProbs(policy=pol, lengths=t([[10.0, 8.0, 12.0, 6.0, 0.0]]), reference=t([[-19, -17, -24, -16, 0]]),
                  scores=t([[-1.5, -3, -2, -2, 99.0]]), item_mask=torch.tensor([[True] * 4 + [False]]))
    loss, _ = get_objective("steerlm2")(lp)
    loss.backward()
    w_minus_b = [0.276006, -0.273940, 0.114496, -0.116563]
    assert pol.grad[0, :4].tolist() == pytest.approx([-d / 9.0 for d in w_minus_b], abs=1e-6)
    assert float(pol.grad[0, 4]) == 0.0


def test_attribute_likelihood_worked() -> None:
    assert attribute_log_likelihood([4, 4, 4, 2, 2], [3.6, 3.2, 3.9, 1.4, 1.1]) == pytest.approx(-4.921577, abs=1e-6)


def test_attribute_string_order_rounding_and_slot() -> None:
    s = attribute_string({"verbosity": 1.4, "helpfulness": 3.6, "humor": 0, "coherence": 5.2, "correctness": 2.5,
                          "complexity": -1})
    assert s == "humor:0,helpfulness:4,correctness:3,coherence:4,complexity:0,verbosity:1"
    msgs = with_attributes("Hi", {"helpfulness": 4})
    assert msgs == [{"role": "system", "content": "Attributes: helpfulness:4"}, {"role": "user", "content": "Hi"}]
    again = with_attributes([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
                            "verbosity:0")
    assert again[0]["content"] == "Be kind.\n\nAttributes: verbosity:0"
    assert with_attributes(again, "verbosity:4")[0]["content"] == "Be kind.\n\nAttributes: verbosity:4"
    sft = steerlm_sft([ScoredExample("Q", "A", {"helpfulness": 1.2, "verbosity": 3.7})])
    assert sft[0].prompt[0]["content"] == "Attributes: helpfulness:1,verbosity:4" and sft[0].completion == "A"


class LenSampler:
    """Deterministic samples; log-probs −(words); a 'verbosity:4' request doubles the answer."""

    def __init__(self) -> None:
        self.compute = Compute()

    def sample(self, prompts, n=1, max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, stop=(), seed=None):
        out = []
        for p in prompts:
            long = "verbosity:4" in p[0]["content"]
            out.append([Sample(" ".join(["word"] * ((j + 1) * (2 if long else 1))), [], 0.0, "stop")
                        for j in range(n)])
        return out

    def score_logprobs(self, prompts, completions):
        return [[-0.5] * len(c.split()) for c in completions]


class AttrReward:
    name = "attrs"

    def __call__(self, prompts, completions, **context):
        return RewardResult([0.0] * len(completions),
                            [{"helpfulness": 3.0, "verbosity": min(4.0, len(c.split()) / 2)} for c in completions])


def test_steerlm2_builder_weights() -> None:
    items = items_from_prompts(["Tell me about cats."])
    b = SteerLM2Builder(LenSampler(), AttrReward(), sampling=SamplingSettings(n=3),
                        targets="helpfulness:3,verbosity:1")
    (outcome,) = b.build(items)
    (rec,) = outcome.records
    assert rec.prompt[0]["content"] == "Attributes: helpfulness:3,verbosity:1"
    meta = rec.metadata
    # Same model for P and Q': ℓ^P − ℓ^Q' = 0, so scores = ℓ^A; verbosity â = 0.5, 1, 1.5 against target 1.
    assert meta["logp_sft"] == meta["logp_init"] == [-0.5, -1.0, -1.5]
    assert rec.scores == pytest.approx(meta["logp_attr"])
    assert meta["logp_attr"][1] == pytest.approx(attribute_log_likelihood([3, 1], [3.0, 1.0]))
    assert max(range(3), key=lambda i: rec.scores[i]) == 1  # the sample closest to the target weighs most


def test_steering_check_detects_verbosity_move() -> None:
    check = attribute_steering_check(LenSampler(), AttrReward(), ["a", "b", "c", "d"], "verbosity", n_resamples=200)
    assert check.shift["verbosity"].value == pytest.approx(0.5)  # 2 words vs 1 → â 1.0 vs 0.5
    assert check.moved_up.value == 1.0 and check.shift["helpfulness"].value == 0.0


def test_cli_steerlm_build_and_train_tiny(tmp_path, capsys) -> None:
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f"Answer {i}.",
                                          "attributes": {"helpfulness": i % 5, "verbosity": 4 - i % 5}}) + "\n"
                              for i in range(4)))
    out = tmp_path / "sft.jsonl"
    assert main(["data", "build", "--from", "steerlm", "--scored", str(scored), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Attributes: helpfulness:1,verbosity:3"}
    run = tmp_path / "run"
    assert main(["train", "--model", "tiny-random:1:32", "--data", str(out), "--objective", "sft",
                 "--output-dir", str(run), "--set", "max_steps=1", "--set", "batch_size=2",
                 "--set", "progress=false"]) == 0
    assert (run / "metrics.jsonl").exists()
