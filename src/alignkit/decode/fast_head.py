"""A faster output projection for CPU decoding: logits as `W @ h.T` instead of `h @ W.T`.

At decode time the output projection multiplies a few dozen hidden states by the vocabulary matrix (49k x 576 for
SmolLM2). With few rows, MKL's sgemm is markedly faster with the vocabulary as the long, untransposed operand
(an ad-hoc matmul timing on the 2026-12-04 CPU, one thread: 20 -> 25 GFLOP/s at 32 rows, 9.5 -> 17 at 8;
end to end only +2% at batch 32, docs/benchmarks.md, Sampling). The layers' own projections show no such gap, so
only the head is changed, and only while the sampler decodes: `transposed_head(model)` swaps the head's
`forward` on a plain fp32 `nn.Linear` on the CPU and restores it on exit (the weights are read live, so a model
that is being trained is never stale). Results equal the plain projection up to float summation order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _forward(head: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    out = (head.weight @ flat.T).T
    if head.bias is not None:
        out = out + head.bias
    return out.contiguous().reshape(*x.shape[:-1], -1)


@contextmanager
def transposed_head(model: Any) -> Iterator[None]:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if (type(head) is not torch.nn.Linear or head.weight.device.type != "cpu"
            or head.weight.dtype != torch.float32 or "forward" in vars(head)):
        yield
        return
    head.forward = lambda x: _forward(head, x)  # an instance attribute: nn.Module.__call__ finds it first
    try:
        yield
    finally:
        del head.forward
