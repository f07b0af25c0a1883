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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from alignkit.decode.kv_buffer import grow_layers
from alignkit.decode.prefix_cache import row_kv, supported
from alignkit.decode.sampler import Sample

if TYPE_CHECKING:
    from alignkit.decode.hf import HFSampler

# tokens between two early-rejection tests of a row: decoding every step would cost more than the few tokens a
# doomed row runs on for
REJECT_EVERY = 4


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
             temperature: float, top_p: float, top_k: int, stop: Sequence[str], seed: int | None,
             reject: Sequence[Callable[[str], bool] | None] | None = None) -> list[Sample]:
    """All samples, prompt-major (prompt i's samples at i*n .. i*n+n-1); one budget per prompt.

    `reject[i]`: a test of prompt i's partial text (`alignkit.rewards.early_reject`), run every `REJECT_EVERY`
    tokens; a row it condemns stops with finish reason `rejected` and gives its place to a waiting prompt."""
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
    # A finished row stays in the batch (computed, ignored) until `slack` rows have finished: dropping rows or
    # merging new ones copies every layer's KV, so compacting once per `slack` finished rows instead of once per
    # row trades a few idle rows' matmul for far fewer whole-cache copies (docs/benchmarks.md, sampler rows).
    slack = max(n, sp.max_batch_rows // 8)
    slots: list[int | None] = []  # batch position -> row id; None once that row finished
    from tqdm.auto import tqdm

    bar = tqdm(total=rows, desc="sampling", unit="row", leave=False,
               disable=not (sp.progress and rows > sp.max_batch_rows))
    cache: Any = None
    mask = last_pos = logits = None
    mergeable = True
    while True:
        live = [b for b, r in enumerate(slots) if r is not None]
        dead = len(slots) - len(live)
        if dead and (not live or dead >= slack):
            if not live:
                slots, cache = [], None
            else:  # drop finished rows from the cache: no compute on dead rows
                sel = torch.tensor(live, device=sp.device)
                cache.batch_select_indices(sel)
                mask, last_pos, logits = mask[sel], last_pos[sel], logits[sel]
                slots = [slots[b] for b in live]
                if mergeable:
                    mask = _trim(cache, mask)
        take = min(len(waiting), (sp.max_batch_rows - len(slots)) // n if slots else group)
        if take > 0 and (not slots or mergeable):
            idx = [waiting.popleft() for _ in range(take)]
            lg, c2, m2, p2, proc, hit = sp._prefill([contexts[i] for i in idx], [len(contexts[i]) - 1 for i in idx])
            lg = lg[:, -1]
            for i, a, b in zip(idx, proc, hit, strict=True):
                processed[i], cached[i] = a, b
            if n > 1:  # one prompt encoding shared by n samples
                c2.batch_repeat_interleave(n)
                lg, m2, p2 = lg.repeat_interleave(n, dim=0), m2.repeat_interleave(n, dim=0), p2.repeat_interleave(n, 0)
            new_rows: list[int | None] = [i * n + j for i in idx for j in range(n)]
            if slots:
                mask = _merge(cache, mask, c2, m2)
                logits, last_pos = torch.cat([logits, lg]), torch.cat([last_pos, p2])
                slots = slots + new_rows
            else:
                cache, mask, logits, last_pos, slots = c2, m2, lg, p2, new_rows
            mergeable = supported(cache)
            if mergeable:
                grow_layers(cache)
        live = [b for b, r in enumerate(slots) if r is not None]
        if not live:
            break
        logits_f = (logits if len(live) == len(slots) else logits[torch.tensor(live, device=sp.device)]).float()
        raw = torch.log_softmax(logits_f, dim=-1)
        if temperature == 0:
            tok = raw.argmax(dim=-1)
            chosen_lp = torch.zeros(len(live))
        else:
            if temperature == 1.0 and top_p >= 1.0 and not top_k:
                logq = raw  # the raw distribution already: skip a second softmax
            else:
                logq = torch.log_softmax(truncate(logits_f / temperature, top_p, top_k), dim=-1)
            # Gumbel-max with each row's own generator: robust to the tiny float differences between a batched
            # and an unbatched forward (inverse-CDF sampling over a 50k cumsum is not). In place: the noise of
            # 128 rows x 49k tokens is 25 MB, and fresh buffers per op cost more than the arithmetic.
            gumbel = torch.empty(logq.shape, dtype=torch.float32)
            for i, b in enumerate(live):
                gumbel[i].uniform_(generator=gens[slots[b]])  # the stream torch.rand(V, generator=...) gives
            gumbel = gumbel.clamp_(min=1e-20, max=1 - 1e-7).log_().neg_().log_().neg_().to(logq.device)
            tok = gumbel.add_(logq).argmax(dim=-1)
            chosen_lp = logq.gather(-1, tok[:, None]).squeeze(-1).cpu()
        tok_raw = raw.gather(-1, tok[:, None]).squeeze(-1).cpu().tolist()
        tok_list = tok.cpu().tolist()
        for i, b in enumerate(live):
            r = slots[b]
            assert r is not None
            t = tok_list[i]
            tokens[r].append(t)
            raw_lps[r].append(tok_raw[i])
            sample_lp[r] += float(chosen_lp[i])
            if t in sp.eos_ids:
                finish[r] = "eos"
            elif stop and any(s in sp.tokenizer.decode(tokens[r][-tail_tokens:]) for s in stop):
                finish[r] = "stop"
            elif len(tokens[r]) == budgets[r // n]:
                finish[r] = "length"
            elif (reject is not None and reject[r // n] is not None and len(tokens[r]) % REJECT_EVERY == 0
                  and reject[r // n](sp.decode(tokens[r]))):  # type: ignore[misc]
                finish[r] = "rejected"
            else:
                continue
            slots[b] = None
            bar.update(1)
            if sp.prefix_cache is not None and mergeable:  # the row's KV covers its context and every token fed back
                sp.prefix_cache.store(contexts[r // n] + tokens[r][:-1], row_kv(cache, b, mask[b]))
        if all(r is None for r in slots):
            continue
        feed = tok if len(live) == len(slots) else torch.zeros(len(slots), dtype=tok.dtype).index_copy_(
            0, torch.tensor(live), tok.cpu()).to(tok.device)  # finished rows are fed a dummy token
        mask = torch.cat([mask, torch.ones((len(slots), 1), dtype=mask.dtype, device=mask.device)], dim=1)
        last_pos = last_pos + 1
        out = sp.model(input_ids=feed[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                       use_cache=True, **{sp._cache_kw: cache})
        cache = cache_of(out)
        logits = out.logits[:, -1]
    bar.close()
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
