"""LoRA checkpoints in `alignkit merge` (spec wave2_selfalign_merge.md §5 Tests: "LoRA merge equals
`merge_and_unload` of the scaled adapters"): a LoRA adapter directory's task vector is (α/r)·B·A on its target
modules and zero elsewhere; λ = 1 gives PEFT's `merge_and_unload`; λ-weighted sums of two adapters equal PEFT's
`add_weighted_adapter(..., combination_type="cat")` (exact: the ranks are concatenated, nothing is truncated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.merge.vectors import load_task_vectors, state_of
from alignkit.models import LoraConfig, load_model, mark_adapter_base, merge_and_save

TARGETS = ["q_proj", "v_proj"]


def _adapter(base_dir: Path, out: Path, seed: int, r: int, alpha: int) -> Path:
    """A LoRA adapter on `base_dir` with non-zero B (PEFT initialises B to 0), saved as alignkit saves one."""
    model, tok = load_model(str(base_dir), lora=LoraConfig(r=r, alpha=alpha, target_modules=TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    info = mark_adapter_base(model, str(base_dir), 0)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "alignkit.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lora")
    model, tok = load_model("tiny-random")
    base = merge_and_save(model, tok, root / "base")
    return {"base": base, "a": _adapter(base, root / "a", 1, r=4, alpha=8),
            "b": _adapter(base, root / "b", 2, r=2, alpha=8)}


def _peft(base: Path, adapters: dict[str, Path]) -> torch.nn.Module:
    from peft import PeftModel

    model, _ = load_model(str(base))
    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(str(adapters[name]), adapter_name=name)
    return peft_model


def test_a_lora_task_vector_is_the_scaled_product_on_its_targets_only(lora_dirs: dict[str, Path]) -> None:
    _, _, tv = load_task_vectors(str(lora_dirs["base"]), [str(lora_dirs["a"])], anchor="base")
    saved = load_file(str(lora_dirs["a"] / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    a, b = saved[f"{prefix}.lora_A.weight"], saved[f"{prefix}.lora_B.weight"]
    want = (8 / 4) * b @ a  # α/r = 2
    got = tv.vectors[0]["model.layers.0.self_attn.q_proj.weight"]
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    for key, vec in tv.vectors[0].items():
        if not any(t in key for t in TARGETS):
            assert torch.count_nonzero(vec) == 0, key


def test_lambda_one_is_peft_merge_and_unload(lora_dirs: dict[str, Path]) -> None:
    _, _, tv = load_task_vectors(str(lora_dirs["base"]), [str(lora_dirs["a"])], anchor="base")
    want = state_of(_peft(lora_dirs["base"], {"a": lora_dirs["a"]}).merge_and_unload())
    got = tv.combine([1.0])
    assert set(got) == set(want)
    assert all(torch.allclose(got[k], want[k], atol=1e-6, rtol=0) for k in want)


def test_weighted_sum_of_two_adapters_is_peft_cat_weighted_adapter(lora_dirs: dict[str, Path]) -> None:
    _, _, tv = load_task_vectors(str(lora_dirs["base"]), [str(lora_dirs["a"]), str(lora_dirs["b"])],
                                 anchor="base")
    peft_model = _peft(lora_dirs["base"], {"a": lora_dirs["a"], "b": lora_dirs["b"]})
    peft_model.add_weighted_adapter(["a", "b"], [0.7, -0.4], "mix", combination_type="cat")
    peft_model.set_adapter("mix")
    for name in ("a", "b"):
        peft_model.delete_adapter(name)
    want = state_of(peft_model.merge_and_unload())
    got = tv.combine([0.7, -0.4])
    changed = [k for k in want if not torch.equal(want[k], tv.base[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    assert all(torch.allclose(got[k], want[k], atol=1e-6, rtol=0) for k in want)
