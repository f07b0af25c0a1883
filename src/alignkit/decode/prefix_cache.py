"""A prefix KV cache for `HFSampler` (issue 18, item 1): reuse the keys/values of recently seen token prefixes.

Test-time strategies call the sampler again and again on contexts that share long prefixes: QAlign re-proposes a
suffix after a kept prefix of the current state, DeAL extends each beam by one token per step and rolls out a
lookahead from it, best-of-N and reward builders re-sample the same prompts. The keys/values a causal LM computes
at position j depend only on tokens 0..j, so the KV of any stored sequence is valid for every context that shares
its first m tokens, not only for contexts that extend the whole stored sequence.

Design:
- entries are keyed by their token ids and hold one row's KV per layer, `[kv_heads, length, head_dim]`, copied
  out of the batch (so an entry's memory is its own and the budget is exact);
- lookup finds the longest common prefix with any entry through an index of block hashes (every `BLOCK` tokens,
  the way paged-attention engines index prefixes), then extends it token by token inside the matched entry;
- eviction is least-recently-used (a lookup hit or a store refreshes an entry) under a byte budget;
- a fingerprint of the model state (parameter versions, which in-place updates such as `optimizer.step` or
  `load_state_dict` bump, and the number of forward hooks, which steering adds) is checked on every call: a
  change clears the cache, so KV computed by other weights or without a hook is never reused.

Only plain full-attention layers (`DynamicLayer`) are supported; a model with sliding-window or other layer kinds
runs without the cache (see `supported`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

BLOCK = 16  # index granularity: a common prefix shorter than one block is not looked up (too short to matter)
SCAN = 32  # at the deepest matching block, compare this many of the newest entries token by token

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [kv_heads, length, head_dim]


@dataclass
class _Entry:
    ids: tuple[int, ...]
    kv: KV
    nbytes: int
    blocks: list[int]


class PrefixCache:
    """LRU store of per-sequence KV, keyed by token ids, bounded by `budget_mb` megabytes."""

    def __init__(self, budget_mb: float) -> None:
        self.budget = int(budget_mb * 2**20)
        self.entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        # hash of ids[:k*BLOCK] -> keys of the entries starting with those ids (an insertion-ordered set)
        self.index: dict[int, dict[tuple[int, ...], None]] = {}
        self.nbytes = 0
        self.fingerprint: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.index.clear()
        self.nbytes = 0

    def check_model(self, model: Any) -> None:
        """Clear the cache if the model's weights or hooks changed since the last call."""
        fp = model_fingerprint(model)
        if fp != self.fingerprint:
            self.clear()
            self.fingerprint = fp

    def lookup(self, ids: Sequence[int], cap: int) -> tuple[int, KV | None]:
        """(m, kv): the longest reusable prefix length m <= cap of `ids` and a stored KV covering at least m
        tokens (slice it to m); (0, None) on a miss."""
        n_blocks = min(len(ids), cap) // BLOCK
        if n_blocks == 0 or not self.entries:
            return 0, None
        # the blocks present form a prefix-closed set (an entry covering k blocks covers k-1), so binary search
        lo, hi, found = 1, n_blocks, None
        while lo <= hi:
            mid = (lo + hi) // 2
            keys = self.index.get(hash(tuple(ids[:mid * BLOCK])))
            newest = next(reversed(keys)) if keys else None
            if newest is not None and list(newest[:mid * BLOCK]) == list(ids[:mid * BLOCK]):
                found, lo = keys, mid + 1
            else:
                hi = mid - 1
        if found is None:
            return 0, None
        # several entries can share the deepest block (one chat template, several prompts): take the longest match
        start, best_m, best = (lo - 1) * BLOCK, -1, None
        for key in list(reversed(found))[:SCAN]:
            m, limit = start, min(cap, len(ids), len(key))
            while m < limit and key[m] == ids[m]:
                m += 1
            if m > best_m:
                best_m, best = m, key
        assert best is not None
        self.entries.move_to_end(best)
        return best_m, self.entries[best].kv

    def store(self, ids: Sequence[int], kv: KV) -> None:
        """Keep `kv` (covering exactly `ids`) as an entry, evicting least-recently-used entries to fit."""
        key = tuple(int(t) for t in ids)
        if len(key) < BLOCK:
            return
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if nbytes > self.budget:
            return
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        while self.entries and self.nbytes + nbytes > self.budget:
            self._evict()
        blocks = [hash(key[:k * BLOCK]) for k in range(1, len(key) // BLOCK + 1)]
        self.entries[key] = _Entry(key, kv, nbytes, blocks)
        self.nbytes += nbytes
        for b in blocks:
            self.index.setdefault(b, {})[key] = None

    def _evict(self) -> None:
        key, entry = self.entries.popitem(last=False)
        self.nbytes -= entry.nbytes
        for b in entry.blocks:
            keys = self.index.get(b)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.index[b]


def model_fingerprint(model: Any) -> tuple[int, int]:
    version = sum(p._version for p in model.parameters())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return version, hooks


def supported(cache: Any) -> bool:
    """True when every layer of a transformers cache is a plain full-attention `DynamicLayer`."""
    from transformers.cache_utils import DynamicLayer

    from alignkit.decode.kv_buffer import GrowLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, GrowLayer) for layer in layers)


def past_from_entries(hits: Sequence[tuple[int, KV | None]], device: torch.device
                      ) -> tuple[Any, torch.Tensor]:
    """A left-padded batch cache from per-row hits (m_r, kv_r): row r's first m_r stored positions sit at the right
    end of a width max(m) block; returns (DynamicCache, past attention mask [rows, width])."""
    from transformers.cache_utils import DynamicCache

    width = max(m for m, _ in hits)
    ref = next(kv for m, kv in hits if kv is not None and m > 0)
    mask = torch.zeros((len(hits), width), dtype=torch.long, device=device)
    layers = []
    for layer, (k0, v0) in enumerate(ref):
        keys = k0.new_zeros((len(hits), k0.shape[0], width, k0.shape[2]))
        values = v0.new_zeros((len(hits), v0.shape[0], width, v0.shape[2]))
        for r, (m, kv) in enumerate(hits):
            if m and kv is not None:
                keys[r, :, width - m:] = kv[layer][0][:, :m]
                values[r, :, width - m:] = kv[layer][1][:, :m]
        layers.append((keys, values))
    for r, (m, _) in enumerate(hits):
        if m:
            mask[r, width - m:] = 1
    return DynamicCache(ddp_cache_data=layers), mask


def row_kv(cache: Any, b: int, mask_row: torch.Tensor) -> KV:
    """Copy row b's KV at its real (unmasked) positions out of a batch cache."""
    pos = mask_row.nonzero().squeeze(-1)
    return [(layer.keys[b].index_select(1, pos), layer.values[b].index_select(1, pos))
            for layer in cache.layers]
