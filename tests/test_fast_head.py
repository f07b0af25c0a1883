"""transposed_head: while the sampler decodes, the output projection computes W @ h.T (faster at few rows on CPU)
and gives the plain projection's logits; the model is left as it was, even when decoding fails."""

from __future__ import annotations

import pytest
import torch

from alignkit.decode.fast_head import transposed_head
from alignkit.models import load_model


def test_same_logits_and_the_head_is_restored() -> None:
    model, _ = load_model("tiny-random")
    ids = torch.tensor([[5, 9, 2, 7], [3, 3, 8, 1]])
    with torch.inference_mode():
        want = model(input_ids=ids).logits
        with transposed_head(model):
            assert "forward" in vars(model.get_output_embeddings())
            got = model(input_ids=ids).logits
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert "forward" not in vars(model.get_output_embeddings())
    with pytest.raises(RuntimeError), transposed_head(model):
        raise RuntimeError("decoding failed")
    assert "forward" not in vars(model.get_output_embeddings())


def test_bias_is_added_and_other_heads_are_left_alone() -> None:
    head = torch.nn.Linear(4, 6)
    holder = type("M", (), {"get_output_embeddings": lambda self: head})()
    x = torch.randn(2, 3, 4)
    with transposed_head(holder):
        torch.testing.assert_close(head(x), x @ head.weight.T + head.bias)
    fp64 = torch.nn.Linear(4, 6).double()
    with transposed_head(type("M", (), {"get_output_embeddings": lambda self: fp64})()):
        assert "forward" not in vars(fp64)  # only fp32 heads, where it was measured
