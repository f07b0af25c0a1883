"""GrowLayer: decode steps append into spare capacity (no whole-cache copy per step) and give exactly the tensors
DynamicLayer's concatenation gives, also after the decode loop replaces its tensors (row selection, trimming)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from alignkit.decode.kv_buffer import GrowLayer, grow_layers


def _pair(prefill: torch.Tensor) -> tuple[DynamicLayer, DynamicLayer]:
    plain, grown = DynamicLayer(), DynamicLayer()
    plain.update(prefill, prefill + 1)
    grown.update(prefill.clone(), prefill.clone() + 1)
    grow_layers(type("C", (), {"layers": [grown]})())
    assert type(grown) is GrowLayer
    return plain, grown


def test_steps_equal_concatenation_and_write_in_place() -> None:
    g = torch.Generator().manual_seed(0)
    plain, grown = _pair(torch.randn(3, 2, 5, 4, generator=g))
    ptrs = set()
    for _ in range(GrowLayer.spare - 1):
        k = torch.randn(3, 2, 1, 4, generator=g)
        pk, pv = plain.update(k, k * 2)
        gk, gv = grown.update(k.clone(), k * 2)
        assert torch.equal(pk, gk) and torch.equal(pv, gv)
        ptrs.add(gk.data_ptr())
    assert len(ptrs) == 1  # one buffer for all these steps: nothing re-concatenated


def test_replaced_tensors_are_rebuffered() -> None:
    g = torch.Generator().manual_seed(1)
    plain, grown = _pair(torch.randn(4, 2, 6, 4, generator=g))
    k = torch.randn(4, 2, 1, 4, generator=g)
    plain.update(k, k)
    grown.update(k.clone(), k.clone())
    sel = torch.tensor([0, 2])
    plain.batch_select_indices(sel)
    grown.batch_select_indices(sel)  # the loop dropping finished rows
    grown.keys, grown.values = grown.keys[:, :, 2:], grown.values[:, :, 2:]  # and trimming dead columns
    plain.keys, plain.values = plain.keys[:, :, 2:], plain.values[:, :, 2:]
    for _ in range(GrowLayer.spare + 3):  # past the spare capacity too
        k = torch.randn(2, 2, 1, 4, generator=g)
        pk, pv = plain.update(k, -k)
        gk, gv = grown.update(k.clone(), -k)
        assert torch.equal(pk, gk) and torch.equal(pv, gv)
