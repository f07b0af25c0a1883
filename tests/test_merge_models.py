"""Merging real (tiny-random) checkpoints: θ(λ) identities (λ=(1,0) is θ_SFT, (1,1) θ_DPO, (0,0) θ_0), the λ-gradient
of a probe loss equals ⟨∇_θ L, τ_j⟩ and finite differences, the balanced probe, PEFT's TIES against its rule on
one tensor, and `alignkit merge` writing a plain HF model (spec wave2_selfalign_merge.md §5, Tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignkit.errors import ConfigError, DataError
from alignkit.merge.baselines import fixed_merge, to_base_anchor
from alignkit.merge.probe import ProbeLoss, balanced, read_probe
from alignkit.merge.search import merged_params
from alignkit.merge.vectors import State, load_task_vectors, state_of, task_vectors
from alignkit.models import load_model, merge_and_save


def _perturbed(state: State, seed: int, pad_id: int, scale: float = 0.02) -> State:
    """A fake fine-tune: noise on every float tensor, the LM head kept tied to the embeddings, and the padding
    row left alone (nn.Embedding's `padding_idx` row gets no lookup gradient, so autograd and finite differences
    would disagree there; the chat template's end token is the pad token)."""
    g = torch.Generator().manual_seed(seed)
    out = {k: v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point() else v.clone()
           for k, v in state.items()}
    emb = "model.embed_tokens.weight"
    out[emb][pad_id] = state[emb][pad_id]
    out["lm_head.weight"] = out[emb]
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    model, tok = load_model("tiny-random")
    base = state_of(model)
    sft = _perturbed(base, 1, tok.pad_token_id)
    dpo = _perturbed(sft, 2, tok.pad_token_id)
    out = {}
    for name, st in (("base", base), ("sft", sft), ("dpo", dpo)):
        model.load_state_dict(st)
        out[name] = merge_and_save(model, tok, root / name)
    return out


def _probe(path: Path) -> Path:
    rows = [{"task": "sft", "prompt": f"Say {w}.", "completion": f"{w} {w}."} for w in ("yes", "no", "maybe")]
    rows += [{"task": "dpo", "prompt": f"Pick {w}.", "chosen": f"I pick {w}.", "rejected": "No."}
             for w in ("red", "blue", "green", "gold", "teal")]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_chain_lambdas_reproduce_each_checkpoint(checkpoints: dict[str, Path]) -> None:
    _, _, tv = load_task_vectors(str(checkpoints["base"]), [str(checkpoints["sft"]), str(checkpoints["dpo"])])
    assert tv.anchors == ["base", "sft"]
    for lam, name in (((0, 0), "base"), ((1, 0), "sft"), ((1, 1), "dpo")):
        want = state_of(load_model(str(checkpoints[name]))[0])
        got = tv.combine(lam)
        assert all(torch.allclose(got[k], want[k], atol=1e-6, rtol=0) for k in want), name


def test_float64_combination_is_exact_to_rounding() -> None:
    # The spec says "exactly in float64"; θ_0 + (θ_1 − θ_0) + (θ_2 − θ_1) can differ from θ_2 in the last bit.
    base = {"w": torch.tensor([0.1, 0.2], dtype=torch.float64), "step": torch.tensor([3])}
    a = {"w": torch.tensor([0.3, -0.7], dtype=torch.float64), "step": torch.tensor([3])}
    b = {"w": torch.tensor([1.3, 0.9], dtype=torch.float64), "step": torch.tensor([3])}
    tv = task_vectors(base, [a, b], ["a", "b"], anchor="chain")
    assert torch.allclose(tv.combine([1, 1])["w"], b["w"], rtol=0, atol=1e-15)
    assert torch.allclose(tv.combine([1, 0])["w"], a["w"], rtol=0, atol=1e-15)
    assert torch.equal(tv.combine([0.5, 0.5])["step"], base["step"])  # integer buffers are not merged
    cum = to_base_anchor(tv)
    assert torch.allclose(cum.vectors[1]["w"], b["w"] - base["w"], rtol=0, atol=1e-15)


def test_lambda_gradient_is_the_inner_product_with_the_task_vectors(tmp_path: Path) -> None:
    model, tok = load_model("tiny-random", dtype=torch.float64)  # float64 weights: finite differences resolve
    base_state = state_of(model)
    sft = _perturbed(base_state, 1, tok.pad_token_id)
    tv = task_vectors(base_state, [sft, _perturbed(sft, 2, tok.pad_token_id)], ["sft", "dpo"])
    loss = ProbeLoss(model, tok, read_probe(_probe(tmp_path / "p.jsonl")), reference=tv.combine([1, 0]))
    base = {k: v for k, v in tv.base.items() if k in tv.vectors[0]}
    lam = torch.tensor([0.7, 0.4], dtype=torch.float64, requires_grad=True)
    (g_lam,) = torch.autograd.grad(loss(merged_params(base, tv.vectors, lam)), lam)
    # ⟨∇_θ L, τ_j⟩ with the model's own parameters (tied embeddings counted once, as one parameter)
    model.load_state_dict(tv.combine([0.7, 0.4]))
    params = dict(model.named_parameters())
    g_theta = torch.autograd.grad(loss({k: v for k, v in params.items()}), list(params.values()))
    inner = [sum(float((g * v[k]).sum()) for k, g in zip(params, g_theta, strict=True)) for v in tv.vectors]
    assert g_lam.tolist() == pytest.approx(inner, rel=1e-6)
    eps = 1e-2
    for j in range(2):
        hi, lo = [0.7, 0.4], [0.7, 0.4]
        hi[j] += eps
        lo[j] -= eps
        with torch.no_grad():
            fd = (float(loss(tv.combine(hi))) - float(loss(tv.combine(lo)))) / (2 * eps)
        assert float(g_lam[j]) == pytest.approx(fd, rel=1e-2)  # logits are fp32 (logps kernel)


def test_dpo_probe_is_zero_margin_at_the_reference(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    model, tok, tv = load_task_vectors(str(checkpoints["base"]), [str(checkpoints["sft"]), str(checkpoints["dpo"])])
    loss = ProbeLoss(model, tok, read_probe(_probe(tmp_path / "p.jsonl")), reference=tv.combine([1, 0]))
    with torch.no_grad():
        per = loss.per_task(tv.combine([1, 0]))
    assert float(per["dpo"]) == pytest.approx(0.693147, abs=1e-5)  # −log σ(0): policy = reference


def test_balanced_probe_has_equal_counts_from_an_imbalanced_pool() -> None:
    pool = {"sft": list(range(100)), "dpo": list(range(10))}
    picked = balanced(pool, per_task=256, seed=0)
    assert {k: len(v) for k, v in picked.items()} == {"dpo": 10, "sft": 10}
    assert balanced(pool, per_task=4, seed=0)["sft"] == balanced(pool, per_task=4, seed=0)["sft"]


def test_probe_rows_without_a_task_name_their_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"task": "sft", "prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'task'"):
        read_probe(p)


def test_ties_keeps_the_top_magnitudes_and_the_elected_sign() -> None:
    base = {"w": torch.zeros(4)}
    a = {"w": torch.tensor([1.0, -0.1, 0.5, 0.0])}
    b = {"w": torch.tensor([0.8, 0.9, -2.0, 0.05])}
    tv = task_vectors(base, [a, b], anchor="base")
    merged = fixed_merge(tv, "ties", density=0.5)["w"]
    # top-2 by magnitude: a keeps (1.0, 0.5) -> [1, 0, .5, 0], b keeps (0.9, −2.0) -> [0, .9, −2, 0] (b's 0.8 is
    # pruned); elected signs by sum: +, +, −; disjoint mean over the agreeing non-zero values
    assert merged.tolist() == pytest.approx([1.0, 0.9, -2.0, 0.0])
    assert fixed_merge(tv, "linear")["w"].tolist() == pytest.approx([0.9, 0.4, -0.75, 0.025])


def test_cli_merge_writes_a_plain_hf_model_and_refuses_to_overwrite(checkpoints: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from alignkit.cli import main

    out = tmp_path / "merged"
    args = ["merge", "--base", str(checkpoints["base"]), "--models", str(checkpoints["sft"]),
            str(checkpoints["dpo"]), "--probe", str(_probe(tmp_path / "p.jsonl")), "--output-dir", str(out),
            "--compare", "ties", "linear", "--set", "steps=3", "--set", "lr=0.05"]
    assert main(args) == 0
    summary = json.loads((out / "merge.json").read_text())
    assert len(summary["trace"]) == 4 and summary["anchors"] == {"sft": "base", "dpo": "sft"}
    assert set(summary["comparison"]) == {"task_arithmetic(1,…,1)", "ties", "linear"}
    assert summary["probe_metrics"]["loss"] <= summary["comparison"]["task_arithmetic(1,…,1)"]["loss"] + 1e-6
    model = AutoModelForCausalLM.from_pretrained(out)
    want = torch.tensor(summary["lambdas"])
    _, _, tv = load_task_vectors(str(checkpoints["base"]), [str(checkpoints["sft"]), str(checkpoints["dpo"])])
    expect = tv.combine(want.tolist())
    assert all(torch.allclose(v, expect[k], atol=1e-6) for k, v in model.state_dict().items())
    assert main(args) == 2  # a non-empty output directory is never replaced without --overwrite
    assert main([*args, "--overwrite"]) == 0


def test_a_search_without_a_probe_is_refused() -> None:
    from alignkit.merge.run import MergeConfig

    with pytest.raises(ConfigError, match="probe=FILE"):
        MergeConfig(models=["x"], method="grid").validate()
