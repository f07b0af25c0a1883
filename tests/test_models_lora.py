"""LoRA attach -> merge -> export round trip on tiny-random: the merged model computes what the adapter model
computes, and the exported directory loads with plain `transformers`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.errors import ModelError
from alignkit.models import LoraConfig, attach_lora, load_model, merge_and_save


@pytest.fixture
def lora_model():
    model, tok = load_model("tiny-random", lora=LoraConfig(r=4, alpha=8))
    # A fresh adapter is a no-op (B = 0); give it weights so merging has something to get right.
    return randomise_lora(model, seed=1), tok


def randomise_lora(model, seed: int):  # noqa: ANN001, ANN201
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    return model.eval()


def batch(tok) -> dict[str, torch.Tensor]:
    return tok(["Hello there, how are you?", "The capital of Peru is Lima."], return_tensors="pt", padding=True)


def test_only_adapter_weights_train(lora_model) -> None:
    model, _ = lora_model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_merged_and_exported_models_match_the_lora_model(lora_model, tmp_path: Path) -> None:
    model, tok = lora_model
    inputs = batch(tok)
    base, _ = load_model("tiny-random")
    with torch.no_grad():
        lora_logits = model(**inputs).logits
        base_logits = base(**inputs).logits
    assert not torch.allclose(lora_logits, base_logits, atol=1e-3)  # the adapter does change the outputs

    out = merge_and_save(model, tok, tmp_path / "export")
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    exported = AutoModelForCausalLM.from_pretrained(str(out), use_safetensors=True).eval()
    assert not any("lora" in n for n, _ in exported.named_parameters())
    with torch.no_grad():
        exported_logits = exported(**inputs).logits
    torch.testing.assert_close(exported_logits, lora_logits, atol=1e-5, rtol=1e-4)

    reloaded, reloaded_tok = load_model(str(out))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, lora_logits, atol=1e-5, rtol=1e-4)
    assert reloaded_tok.chat_template == tok.chat_template
    assert AutoTokenizer.from_pretrained(str(out)).eos_token == "<|im_end|>"


def test_export_replaces_an_existing_directory(lora_model, tmp_path: Path) -> None:
    model, tok = lora_model
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "stale.txt").write_text("old")
    out = merge_and_save(model, tok, tmp_path / "export")
    assert not (out / "stale.txt").exists() and (out / "config.json").exists()


def test_unknown_target_modules_name_the_problem() -> None:
    model, _ = load_model("tiny-random")
    with pytest.raises(ModelError, match="target_modules"):
        attach_lora(model, LoraConfig(r=2, target_modules=["not_a_module"]))


def _save_adapter(model, tok, base: str, out: Path) -> None:
    import json

    from alignkit.models import mark_adapter_base

    info = mark_adapter_base(model, base, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "alignkit.json").write_text(json.dumps(info))


def test_an_adapter_trained_on_another_adapter_run_keeps_both(lora_model, tmp_path: Path) -> None:
    """DPO after LoRA SFT: run B's adapter was trained on run A's model; loading B must give A + B, not base + B
    (PEFT wrapping a PeftModel in a PeftModel silently drops A)."""
    model_a, tok = lora_model
    _save_adapter(model_a, tok, "tiny-random", tmp_path / "a")
    model_b, _ = load_model(str(tmp_path / "a"), lora=LoraConfig(r=4, alpha=8))
    with torch.no_grad():
        only_a = load_model(str(tmp_path / "a"))[0].eval()(**batch(tok)).logits
        assert torch.allclose(model_b.eval()(**batch(tok)).logits, only_a, atol=1e-5)  # a fresh B starts at A
    randomise_lora(model_b, seed=2)
    _save_adapter(model_b, tok, str(tmp_path / "a"), tmp_path / "b")
    with torch.no_grad():
        want = model_b(**batch(tok)).logits
        got = load_model(str(tmp_path / "b"))[0].eval()(**batch(tok)).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, only_a, atol=1e-3)
