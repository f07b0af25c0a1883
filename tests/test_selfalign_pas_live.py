"""PAS on a live (tiny-random Llama, GQA) model (spec wave2_selfalign_merge.md §4 Tests): α = 0 is bit-exact, the
o_proj pre-hook equals the code's bias route, a steered head's pre-o_proj activation moves by exactly α·σ_h along
v_h and unselected heads do not move, the activation cache is computed once for two users, probes find the
informative head, and α is chosen without reading a single test answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alignkit.decode import pas_search as ps
from alignkit.decode.hf import HFSampler
from alignkit.decode.pas_heads import (
    PASArtifact,
    capture_heads,
    fit_logistic,
    head_shape,
    pas_bias,
    pas_steering,
    rank_heads,
)
from alignkit.models import load_model


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return load_model("tiny-random")


def _artifact(model: Any, heads: list[tuple[int, int]], seed: int = 0) -> PASArtifact:
    _, _, dim = head_shape(model)
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(len(heads), dim))
    return PASArtifact(heads=heads, directions=dirs / np.linalg.norm(dirs, axis=1, keepdims=True),
                       sigmas=rng.uniform(0.5, 2.0, size=len(heads)), alpha=3.0)


def _logits(model: Any, tok: Any) -> torch.Tensor:
    ids = torch.tensor([tok("You enjoy quiet evenings at home.")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_alpha_zero_reproduces_the_unsteered_logits_bit_exactly(tiny: Any) -> None:
    model, tok = tiny
    art = _artifact(model, [(0, 1), (1, 3)])
    plain = _logits(model, tok)
    with pas_steering(model, art, alpha=0.0):
        assert torch.equal(_logits(model, tok), plain)
    with pas_steering(model, art, alpha=4.0):
        assert not torch.allclose(_logits(model, tok), plain)
    assert torch.equal(_logits(model, tok), plain)  # hooks removed on exit


def test_bias_route_equals_the_pre_hook(tiny: Any) -> None:
    model, tok = tiny
    art = _artifact(model, [(0, 0), (0, 2), (1, 1)])
    with pas_steering(model, art, alpha=4.0):
        hooked = _logits(model, tok)
    with pas_bias(model, art, alpha=4.0):
        biased = _logits(model, tok)
    assert torch.allclose(hooked, biased, atol=1e-5, rtol=0)
    assert all(layer.self_attn.o_proj.bias is None for layer in model.model.layers)  # restored


def test_a_steered_head_moves_by_alpha_sigma_along_its_direction_and_others_stay(tiny: Any) -> None:
    model, tok = tiny
    art = _artifact(model, [(1, 2)], seed=3)  # the last layer: nothing upstream is steered
    text = ["You like to plan ahead."]
    before = capture_heads(model, tok, text)[0]
    with pas_steering(model, art, alpha=4.0):
        after = capture_heads(model, tok, text)[0]
    diff = after - before
    v, sigma = art.directions[0], art.sigmas[0]
    assert diff[1, 2] @ v == pytest.approx(4.0 * sigma, abs=1e-5)
    assert np.abs(diff[1, [0, 1, 3]]).max() < 1e-6 and np.abs(diff[0]).max() < 1e-6


def test_deltas_match_the_worked_example() -> None:
    art = PASArtifact(heads=[(0, 0)], directions=np.array([[0.235702, -0.235702, 0.942809]]),
                      sigmas=np.array([0.289396]))
    delta = art.deltas(4.0, n_heads=1, head_dim=3)[0].numpy()
    assert delta == pytest.approx([0.272845, -0.272845, 1.091380], abs=2e-6)
    W_o = np.array([[1, 0, 0.5], [0, 2, 0], [0.5, 0, 1]])
    assert W_o @ delta == pytest.approx([0.818535, -0.545690, 1.227803], abs=2e-6)


def test_artifact_round_trips_through_safetensors(tmp_path: Path, tiny: Any) -> None:
    art = _artifact(tiny[0], [(0, 1), (1, 0)])
    back = PASArtifact.load(art.save(tmp_path / "pas.safetensors"))
    assert back.heads == art.heads and back.alpha == 3.0
    assert np.allclose(back.directions, art.directions, atol=1e-6)


def test_logistic_probe_is_at_its_optimum_and_ranking_finds_the_signal_head() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    w, b = fit_logistic(X, y)
    s = 2 * y - 1
    z = X @ w + b
    sig = 1 / (1 + np.exp(s * z))
    assert np.allclose(w - (s * sig) @ X, 0, atol=1e-6) and abs(-(s * sig).sum()) < 1e-6  # ∇ = 0
    n, d = 30, 4
    acts_a, acts_e = rng.normal(size=(n, 2, 3, d)), rng.normal(size=(n, 2, 3, d))
    answers = [5 if i % 2 else 1 for i in range(n)]
    for i, ans in enumerate(answers):  # head (1, 2) carries "what this user would say" on its first unit
        acts_a[i, 1, 2, 0] += 4.0 if ans > 3 else -4.0
        acts_e[i, 1, 2, 0] += -4.0 if ans > 3 else 4.0
    top = rank_heads(acts_a, acts_e, answers, k=2, seed=0)
    assert (top[0][0], top[0][1]) == (1, 2) and top[0][2] == 1.0


def test_option_parser() -> None:
    assert [ps.parse_option(t) for t in (" (B). Moderately", " A", "(E)", " c) no", "xyz")] == [4, 5, 1, 3, None]
    assert ps.parse_option(" the best") == 1  # the code's fallback reads "the " as E (kept for parity)


def _bank_and_user(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = [{"id": f"{t}{i}", "text": f"{verb} item {t}{i}", "trait": t, "key": "+"}
            for t, verb in (("O", "enjoy new ideas in"), ("C", "keep order in")) for i in range(6)]
    (tmp_path / "bank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {r["id"]: (5, 1, 4, 2, 5, 2)[int(r["id"][1:])] for r in rows}
    user = {"user_id": "u1", "answers": answers, "train_items": [r["id"] for r in rows if int(r["id"][1:]) < 5],
            "test_items": [r["id"] for r in rows if int(r["id"][1:]) == 5]}
    (tmp_path / "user.json").write_text(json.dumps(user))
    bank = ps.read_bank(tmp_path / "bank.jsonl")
    return bank, ps.read_user(tmp_path / "user.json", bank)


def test_the_activation_cache_is_computed_once_for_two_users(tmp_path: Path, tiny: Any) -> None:
    bank, user = _bank_and_user(tmp_path)
    cache = ps.HeadCache(*tiny, bank)
    a1, _ = cache.get(user["train_items"])
    a2, _ = cache.get(list(reversed(user["train_items"])))
    assert cache.forwards == 2 * len(user["train_items"])
    assert np.array_equal(a1, a2[::-1])


class Guarded(dict):
    """Answers that log every read, so the test can tell when a test answer was first looked at."""

    def __init__(self, data: dict[str, int], log: list[str]) -> None:
        super().__init__(data)
        self.log = log

    def __getitem__(self, key: str) -> int:
        self.log.append(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.log.append(key)
        return super().get(key, default)

    def items(self) -> Any:
        raise AssertionError("PAS must read answers item by item")

    values = __iter__ = items


def test_alpha_is_chosen_without_reading_a_test_answer(tmp_path: Path, tiny: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bank, user = _bank_and_user(tmp_path)
    log: list[str] = []
    reads_at_choice: list[int] = []
    real = ps.search_alpha

    def spy(answer: Any, truth: Any, alphas: Any) -> Any:
        result = real(answer, truth, alphas)
        reads_at_choice.append(len(log))
        return result

    monkeypatch.setattr(ps, "search_alpha", spy)
    guarded = {**user, "answers": Guarded(user["answers"], log)}
    art, report = ps.pas_search(HFSampler(*tiny), bank, guarded, k=2, alphas=(0.0, 2.0), holdout=0.2, seed=0)
    before = set(log[: reads_at_choice[0]])
    assert not before & set(user["test_items"])
    assert set(report["alpha_items"]) <= set(user["train_items"]) and not set(report["alpha_items"]) & set(
        report["fit_items"])
    assert len(report["alpha_items"]) == 2  # 20% of each trait's 5 known items
    assert art.alpha in (0.0, 2.0) and len(art.heads) == 2
    assert "test_mae_sum" in report and set(log[reads_at_choice[0]:]) & set(user["test_items"])
    system = ps.persona_system(bank, user["answers"], report["fit_items"])
    assert all(bank[i]["text"] not in system for i in report["alpha_items"])  # held-out items not in the persona


def test_cli_steer_search_on_tiny_random_writes_an_artefact_and_strict_json(tmp_path: Path) -> None:
    from alignkit.cli import main

    _bank_and_user(tmp_path)
    out = tmp_path / "pas" / "u1.safetensors"
    args = ["steer", "search", "--model", "tiny-random", "--items", str(tmp_path / "bank.jsonl"), "--user",
            str(tmp_path / "user.json"), "--out", str(out), "--heads", "2", "--alphas", "0,2"]
    assert main(args) == 0
    assert out.exists()
    # tiny-random parses no answer, so every α's MAE is inf: written as null, never as the non-JSON `Infinity`
    report = json.loads(out.with_suffix(".json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert list(report["alpha_table"].values()) == [None, None]
    assert main(args) == 2  # an existing artefact is never replaced without --overwrite
