"""The optional vLLM backend encodes prompts exactly as the HF backend (vLLM itself is not needed for this)."""

from __future__ import annotations

import pytest

from alignkit.decode.hf import HFSampler
from alignkit.decode.vllm import VLLMSampler
from alignkit.models import load_model


@pytest.mark.parametrize(("raw", "template"), [(False, "auto"), (True, "auto"), (False, "chat-only")])
def test_vllm_and_hf_backends_encode_prompts_identically(raw: bool, template: str) -> None:
    from alignkit.data.tokenize import sampler_template

    model, tokenizer = load_model("tiny-random")
    hf = HFSampler(model, tokenizer, raw=raw, template=template)
    vllm = object.__new__(VLLMSampler)  # skip __init__, which starts a vLLM engine
    vllm.tokenizer, vllm.template = tokenizer, sampler_template(template, raw)  # what __init__ sets
    for prompt in ("Say hi.", [{"role": "user", "content": "Say hi."}]):
        assert vllm.encode_prompt(prompt) == hf.encode_prompt(prompt)
