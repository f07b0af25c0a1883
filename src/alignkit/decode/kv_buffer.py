"""A transformers cache layer that appends decode steps into spare capacity instead of re-concatenating.

`DynamicLayer.update` does `torch.cat([keys, new], dim=-2)` every step, so each decoded token copies the whole KV
of every layer: at 128 rows and 250 columns that is ~1 GB of memory traffic per step on a CPU with ~17 GB/s
(docs/benchmarks.md, sampler rows). `GrowLayer` keeps a buffer with `spare` free columns and returns views of
it, so a step writes one column; it re-buffers (one copy, what every step cost before) when the capacity runs
out or when the loop replaced its tensors (row selection, merging, trimming assign new `keys`/`values`).
Results are the same tensors as `DynamicLayer`'s, only stored with a column stride.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class GrowLayer(DynamicLayer):
    spare = 32  # free columns allocated on each re-buffer: 1 copy per `spare` steps instead of 1 per step

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        used, step = self.keys.shape[-2], key_states.shape[-2]
        kbuf: torch.Tensor | None = getattr(self, "_kbuf", None)
        vbuf: torch.Tensor | None = getattr(self, "_vbuf", None)
        if (kbuf is None or vbuf is None or self.keys.data_ptr() != kbuf.data_ptr()
                or self.values.data_ptr() != vbuf.data_ptr() or kbuf.shape[0] != self.keys.shape[0]
                or used + step > kbuf.shape[-2]):
            kbuf, vbuf = self._alloc(self.keys, used + step), self._alloc(self.values, used + step)
        kbuf[:, :, used:used + step] = key_states
        vbuf[:, :, used:used + step] = value_states
        self._kbuf, self._vbuf = kbuf, vbuf
        self.keys, self.values = kbuf[:, :, :used + step], vbuf[:, :, :used + step]
        return self.keys, self.values

    def _alloc(self, old: torch.Tensor, need: int) -> torch.Tensor:
        b, h, used, d = old.shape
        buf = old.new_empty((b, h, need + self.spare, d))
        buf[:, :, :used] = old
        return buf


def grow_layers(cache: Any) -> Any:
    """Turn a cache's plain `DynamicLayer`s into `GrowLayer`s in place (same tensors; only `update` differs)."""
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer:
            layer.__class__ = GrowLayer
    return cache
