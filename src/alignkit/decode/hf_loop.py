"""`HFSampler`'s decode loop with continuous batching (issue 18, item 5).

The batch holds at most `max_batch_rows` rows (prompts × n). When rows finish, waiting prompts are prefilled and
their rows join the running batch (their KV is left-padded to the batch's width, or the batch's to theirs), so a
large prompt set keeps the batch full instead of waiting for the slowest row of each chunk. Columns every row
masks out (left padding of rows that have since finished) are trimmed.

What a row samples does not depend on when it joined: each row has its own generator keyed by (prompt index in
the call, sample index) (`sampler.seed_for`), all created up front in row order as before, and Gumbel-max
sampling is robust to the float noise of a different batch composition (tests/test_decode_hf_pinned.py pins the
seeded outputs of the chunked loop this replaced).

A model whose cache has layers other than plain `DynamicLayer`s (sliding windows) cannot be merged this way; it
falls back to the chunked behaviour (a new group joins only when the batch is empty).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from alignkit.decode.prefix_cache import row_kv, supported
from alignkit.decode.sampler import Sample

if TYPE_CHECKING:
    from alignkit.decode.hf import HFSampler


def cache_of(out: Any) -> Any:
    cache = out.get("cache")
    return out.get("past_key_values") if cache is None else cache


def truncate(logits: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering; always keeps the most likely token."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _merge(cache: Any, mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor) -> torch.Tensor:
    """Append new_cache's rows to cache in place (left-padding the narrower one); returns the merged mask."""
    wa, wb = mask.shape[1], new_mask.shape[1]
    w = max(wa, wb)
    for la, lb in zip(cache.layers, new_cache.layers, strict=True):
        la.keys = torch.cat([F.pad(la.keys, (0, 0, w - wa, 0)), F.pad(lb.keys, (0, 0, w - wb, 0))], dim=0)
        la.values = torch.cat([F.pad(la.values, (0, 0, w - wa, 0)), F.pad(lb.values, (0, 0, w - wb, 0))], dim=0)
    return torch.cat([F.pad(mask, (w - wa, 0)), F.pad(new_mask, (w - wb, 0))], dim=0)


def _trim(cache: Any, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading columns no row attends to (the padding of rows that finished)."""
    used = mask.any(dim=0)
    if bool(used[0]) or not bool(used.any()):
        return mask
    first = int(used.to(torch.int8).argmax())
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
    return mask[:, first:]


@torch.inference_mode()
def generate(sp: HFSampler, contexts: list[list[int]], prefixes: list[list[int]], n: int, budgets: list[int],
             temperature: float, top_p: float, top_k: int, stop: Sequence[str], seed: int | None) -> list[Sample]:
    """All samples, prompt-major (prompt i's samples at i*n .. i*n+n-1); one budget per prompt."""
    stop = [s for s in stop if s]
    tail_tokens = max((len(s) for s in stop), default=0) + 1
    rows = len(contexts) * n
    gens = [sp._generator(seed, (r // n, r % n)) for r in range(rows)]
    tokens: list[list[int]] = [[] for _ in range(rows)]
    raw_lps: list[list[float]] = [[] for _ in range(rows)]
    sample_lp = [0.0] * rows
    finish = [""] * rows
    processed = [0] * len(contexts)
    cached = [0] * len(contexts)
    waiting = deque(range(len(contexts)))
    group = max(1, sp.max_batch_rows // n)
    alive: list[int] = []  # batch position -> row id
    cache: Any = None
    mask = last_pos = logits = None
    mergeable = True
    while True:
        take = min(len(waiting), (sp.max_batch_rows - len(alive)) // n if alive else group)
        if take > 0 and (not alive or mergeable):
            idx = [waiting.popleft() for _ in range(take)]
            lg, c2, m2, p2, proc, hit = sp._prefill([contexts[i] for i in idx], [len(contexts[i]) - 1 for i in idx])
            lg = lg[:, -1]
            for i, a, b in zip(idx, proc, hit, strict=True):
                processed[i], cached[i] = a, b
            if n > 1:  # one prompt encoding shared by n samples
                c2.batch_repeat_interleave(n)
                lg, m2, p2 = lg.repeat_interleave(n, dim=0), m2.repeat_interleave(n, dim=0), p2.repeat_interleave(n, 0)
            new_rows = [i * n + j for i in idx for j in range(n)]
            if alive:
                mask = _merge(cache, mask, c2, m2)
                logits, last_pos = torch.cat([logits, lg]), torch.cat([last_pos, p2])
                alive = alive + new_rows
            else:
                cache, mask, logits, last_pos, alive = c2, m2, lg, p2, new_rows
            mergeable = supported(cache)
        if not alive:
            break
        logits_f = logits.float()
        raw = torch.log_softmax(logits_f, dim=-1)
        if temperature == 0:
            tok = raw.argmax(dim=-1)
            chosen_lp = torch.zeros(len(alive))
        else:
            if temperature == 1.0 and top_p >= 1.0 and not top_k:
                logq = raw  # the raw distribution already: skip a second softmax
            else:
                logq = torch.log_softmax(truncate(logits_f / temperature, top_p, top_k), dim=-1)
            # Gumbel-max with each row's own generator: robust to the tiny float differences between a batched
            # and an unbatched forward (inverse-CDF sampling over a 50k cumsum is not)
            u = torch.stack([torch.rand(logq.shape[-1], generator=gens[r]) for r in alive]).to(logq.device)
            gumbel = -torch.log(-torch.log(u.clamp(min=1e-20, max=1 - 1e-7)))
            tok = (logq + gumbel).argmax(dim=-1)
            chosen_lp = logq.gather(-1, tok[:, None]).squeeze(-1).cpu()
        tok_raw = raw.gather(-1, tok[:, None]).squeeze(-1).cpu().tolist()
        tok_list = tok.cpu().tolist()
        keep: list[int] = []
        for b, r in enumerate(alive):
            t = tok_list[b]
            tokens[r].append(t)
            raw_lps[r].append(tok_raw[b])
            sample_lp[r] += float(chosen_lp[b])
            if t in sp.eos_ids:
                finish[r] = "eos"
            elif stop and any(s in sp.tokenizer.decode(tokens[r][-tail_tokens:]) for s in stop):
                finish[r] = "stop"
            elif len(tokens[r]) == budgets[r // n]:
                finish[r] = "length"
            else:
                keep.append(b)
                continue
            if sp.prefix_cache is not None and mergeable:  # the row's KV covers its context and every token fed back
                sp.prefix_cache.store(contexts[r // n] + tokens[r][:-1], row_kv(cache, b, mask[b]))
        if not keep:
            alive, cache = [], None
            continue
        if len(keep) < len(alive):  # drop finished rows from the cache: no compute on dead rows
            sel = torch.tensor(keep, device=sp.device)
            cache.batch_select_indices(sel)
            mask, last_pos, tok = mask[sel], last_pos[sel], tok[sel]
            alive = [alive[b] for b in keep]
            if mergeable:
                mask = _trim(cache, mask)
        mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=mask.device)], dim=1)
        last_pos = last_pos + 1
        out = sp.model(input_ids=tok[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                       use_cache=True, **{sp._cache_kw: cache})
        cache = cache_of(out)
        logits = out.logits[:, -1]
    samples = []
    for r in range(rows):
        prompt_i = r // n
        first = r % n == 0
        share = (processed[prompt_i] if first else 0) + len(tokens[r]) - 1
        text, reason = sp._text(prefixes[prompt_i], tokens[r], finish[r], stop)
        samples.append(Sample(text=text, token_ids=tokens[r], logprob=sample_lp[r], finish_reason=reason,
                              token_logprobs=raw_lps[r], forward_tokens=share,
                              cached_tokens=cached[prompt_i] if first else 0))
    sp.compute.forward_tokens += sum(s.forward_tokens for s in samples)
    sp.compute.generated_tokens += sum(len(s.token_ids) for s in samples)
    sp.compute.cached_tokens += sum(s.cached_tokens for s in samples)
    return samples
