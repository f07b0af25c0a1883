"""Representation steering (spec A6): exact no-op at α=0, monotone probe response, save/load, PCA sign, and a
vector read where it is added (the last layer included)."""

from __future__ import annotations

import pytest
import torch

from alignkit.decode.hf import HFSampler
from alignkit.decode.steer import (
    SteeredSampler,
    SteeringVector,
    decoder_layers,
    extract_steering_vector,
    last_token_states,
    steering,
)
from alignkit.errors import ConfigError
from alignkit.models import load_model

PAIRS = [("I love this, it is wonderful", "I hate this, it is awful"),
         ("What a great and happy day", "What a terrible and sad day"),
         ("You are kind and generous", "You are cruel and selfish")]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


def _logits(model, tok, text):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_alpha_zero_is_exact_and_hooks_are_removed(tiny) -> None:
    model, tok = tiny
    vec = extract_steering_vector(model, tok, PAIRS, layers=[0, 1])
    base = _logits(model, tok, "Tell me about your day")
    with steering(model, vec, alpha=0.0):
        zero = _logits(model, tok, "Tell me about your day")
    assert torch.equal(base, zero)
    with steering(model, vec, alpha=3.0):
        moved = _logits(model, tok, "Tell me about your day")
    assert not torch.allclose(base, moved)
    assert torch.equal(_logits(model, tok, "Tell me about your day"), base)  # hooks gone


@pytest.mark.parametrize("method", ["mean_diff", "pca"])
def test_probe_projection_increases_with_alpha(tiny, method) -> None:
    model, tok = tiny
    vec = extract_steering_vector(model, tok, PAIRS, layers=[0], method=method)
    v = vec.vectors[0]
    assert v.norm().item() == pytest.approx(1.0, abs=1e-5)
    text = ["The movie was"]
    projections = []
    for alpha in [-4.0, -2.0, 0.0, 1.0, 2.0, 4.0]:
        with steering(model, vec, alpha):
            h = last_token_states(model, tok, text, [0, 1])
        projections.append(((h[0][0] @ v).item(), (h[1][0] @ v).item()))
    at_layer = [p[0] for p in projections]
    assert all(b > a for a, b in zip(at_layer, at_layer[1:], strict=False))
    assert at_layer[-1] - at_layer[2] == pytest.approx(4.0, abs=1e-3)  # unit vector: shift = α exactly
    downstream = [p[1] for p in projections]
    assert all(b > a for a, b in zip(downstream, downstream[1:], strict=False))
    # sign: positives project above negatives
    pos = last_token_states(model, tok, [a for a, _ in PAIRS], [0])[0] @ v
    neg = last_token_states(model, tok, [b for _, b in PAIRS], [0])[0] @ v
    assert (pos > neg).float().mean() >= 0.5


def test_pca_sign_follows_labels(tiny) -> None:
    model, tok = tiny
    swapped = [(b, a) for a, b in PAIRS]
    v1 = extract_steering_vector(model, tok, PAIRS, [1], method="pca").vectors[1]
    v2 = extract_steering_vector(model, tok, swapped, [1], method="pca", labels=[False] * 3).vectors[1]
    assert torch.allclose(v1, v2, atol=1e-5)


def test_save_load_and_steered_sampler(tiny, tmp_path) -> None:
    model, tok = tiny
    vec = extract_steering_vector(model, tok, PAIRS, layers=[-1])
    path = vec.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(path)
    assert back.layers == [1] and back.method == "mean_diff"
    assert torch.equal(back.vectors[1], vec.vectors[1])
    sampler = HFSampler(model, tok)
    plain = sampler.sample(["Hi"], max_new_tokens=5, temperature=0)[0][0]
    same = SteeredSampler(sampler, back, alpha=0.0).sample(["Hi"], max_new_tokens=5, temperature=0)[0][0]
    assert plain.token_ids == same.token_ids
    with pytest.raises(ConfigError, match="no direction"):
        with steering(model, back, 1.0, layers=[0]):
            pass


def _block_outputs_at_last_token(model, tok, texts, layer):
    """Independent reader: a forward hook on decoder block `layer` (where steering adds), last token."""
    got = []
    block = decoder_layers(model)[layer]
    handle = block.register_forward_hook(lambda m, a, out: got.append((out[0] if isinstance(out, tuple) else out)[0, -1]))
    try:
        with torch.inference_mode():
            for t in texts:
                model(input_ids=torch.tensor([tok(t)["input_ids"]]))
    finally:
        handle.remove()
    return torch.stack(got).float()


@pytest.mark.parametrize("layer", [0, -1])
def test_vector_read_and_added_at_the_same_point_moves_the_mean_by_exactly_the_vector(tiny, layer) -> None:
    model, tok = tiny
    positives, negatives = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    diff = (_block_outputs_at_last_token(model, tok, positives, layer)
            - _block_outputs_at_last_token(model, tok, negatives, layer)).mean(0)
    vec = extract_steering_vector(model, tok, PAIRS, layers=[layer])
    v = vec.vectors[len(decoder_layers(model)) - 1 if layer == -1 else layer]
    # The extracted direction is the mean difference of the very activations the hook adds to (at the last layer
    # too, where hidden_states[-1] is after the final norm and would give another direction).
    assert torch.allclose(v, diff / diff.norm(), atol=1e-5)
    # Adding ‖d‖·v to the negatives moves their mean activation at that layer onto the positives' mean.
    with steering(model, vec, alpha=diff.norm().item()):
        moved = _block_outputs_at_last_token(model, tok, negatives, layer).mean(0)
    target = _block_outputs_at_last_token(model, tok, positives, layer).mean(0)
    assert torch.allclose(moved, target, atol=1e-4)


def test_last_layer_states_are_read_before_the_final_norm(tiny) -> None:
    model, tok = tiny
    text = ["Tell me about your day"]
    states = last_token_states(model, tok, text, [0, -1])
    ids = torch.tensor([tok(text[0])["input_ids"]])
    with torch.inference_mode():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        normed = model.model.norm(states[-1])
    assert torch.allclose(states[0][0], hs[1][0, -1], atol=1e-5)  # inner blocks: the same as hidden_states
    assert torch.allclose(normed[0], hs[-1][0, -1], atol=1e-5)  # last: hidden_states[-1] = norm(block output)
    assert not torch.allclose(states[-1][0], hs[-1][0, -1], atol=1e-3)
