"""Shared-prompt encoding (`shared_prompt: true`) equals repeating the prompt: same losses and gradients."""

from __future__ import annotations

import pytest
import torch

from alignkit.data.io import read_records, sample_path
from alignkit.models import load_model
from alignkit.objectives import get_objective
from alignkit.train.batching import collate, tokenize_records
from alignkit.train.engine import ObjectiveStep
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.prefix import SharedPromptStep
from alignkit.train.reference import Reference


@pytest.mark.parametrize(("kind", "objective"), [("listwise", "pro"), ("listwise", "aft"), ("pairwise", "simpo")])
def test_shared_prompt_matches_repeated_prompt(kind, objective):
    torch.set_num_threads(1)
    model, tok = load_model("tiny-random", seed=3)
    data = tokenize_records(list(read_records(sample_path(kind), kind).records), kind, tok)
    pad = int(tok.pad_token_id)
    spec = get_objective(objective)
    hp = {"boundary": 0.5} if objective == "aft" else {}
    policy = CompletionLogProbs(model)
    plain = ObjectiveStep(spec, hp, Reference("none"), "cpu")
    shared = SharedPromptStep(spec, hp, Reference("none"), "cpu", data={"train": data}, pad_id=pad)
    batch = collate(data, list(range(4)), pad)  # prompts of different lengths, ragged lists
    results = []
    for step in (plain, shared):
        model.zero_grad(set_to_none=True)
        lp = step.logprobs(policy, batch)
        loss, _, _ = step(policy, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((lp.policy.detach(), loss.detach(), grads))
    (lp_a, loss_a, g_a), (lp_b, loss_b, g_b) = results
    torch.testing.assert_close(lp_b, lp_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    assert g_a.keys() == g_b.keys() and len(g_a) == len(list(model.parameters()))
    for name in g_a:  # the prompt's embedding rows get gradient only through the cached keys/values
        torch.testing.assert_close(g_b[name], g_a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_shared_prompt_trains_from_config(tmp_path):
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train

    cfg = TrainConfig(model="tiny-random", data=str(sample_path("listwise")), objective="lipo_lambda",
                      output_dir=str(tmp_path / "r"), max_steps=2, batch_size=2, lr=1e-3, progress=False,
                      shared_prompt=True, torch_threads=1)
    result = train(cfg)
    assert result.steps == 2 and result.summary["last"]["loss"] is not None


def test_shared_prompt_adapter_reference_matches_repeated_prompt():
    """LoRA with `reference: adapter`: the reference forward (adapters off) shares prompts too."""
    from alignkit.models import LoraConfig

    torch.set_num_threads(1)
    model, tok = load_model("tiny-random", seed=4, lora=LoraConfig(r=4))
    with torch.no_grad():  # non-zero adapters, so that policy and reference differ
        g = torch.Generator().manual_seed(0)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    data = tokenize_records(list(read_records(sample_path("listwise"), "listwise").records), "listwise", tok)
    pad = int(tok.pad_token_id)
    spec = get_objective("lipo_lambda")
    policy = CompletionLogProbs(model)
    plain = ObjectiveStep(spec, {"beta": 1.0}, Reference("adapter"), "cpu")
    shared = SharedPromptStep(spec, {"beta": 1.0}, Reference("adapter"), "cpu", data={"train": data}, pad_id=pad)
    batch = collate(data, [1, 3, 5], pad)
    out = []
    for step in (plain, shared):
        model.zero_grad(set_to_none=True)
        lp = step.logprobs(policy, batch)
        loss, _ = spec(lp, beta=1.0)
        loss.backward()
        out.append((lp.reference, loss.detach(),
                    {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (ref_a, loss_a, g_a), (ref_b, loss_b, g_b) = out
    assert not torch.allclose(ref_a, lp.policy.detach())  # the adapters matter
    torch.testing.assert_close(ref_b, ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    assert g_a.keys() == g_b.keys() and g_a
    for n in g_a:
        torch.testing.assert_close(g_b[n], g_a[n], atol=1e-5, rtol=1e-4, msg=n)
