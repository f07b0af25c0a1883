"""The embedded SmolLM2-135M-Instruct loads with the network switched off and generates."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import socket
    def no_network(*args, **kwargs):
        raise RuntimeError("network access attempted")
    socket.socket.connect = no_network  # belt and braces on top of HF_HUB_OFFLINE
    import torch
    from alignkit.models import load_model
    model, tok = load_model("smollm2-135m-instruct")
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:]
    print("NEW_TOKENS", len(new))
    print("TEXT", tok.decode(new, skip_special_tokens=True))
""")


@pytest.mark.slow
def test_embedded_model_loads_offline_and_generates() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert 1 <= int(lines["NEW_TOKENS"]) <= 8
    assert "Paris" in lines["TEXT"]
