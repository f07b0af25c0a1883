"""`HFSampler`: the Sampler protocol over a Hugging Face causal LM, with its own decode loop.

Why a custom loop rather than `model.generate`: it lets every call count tokens exactly, encode a prompt once for
`n` samples (prefill, then `DynamicCache.batch_repeat_interleave`), give each row its own seeded random stream (so
a row's sample does not depend on what else is batched with it), return raw-model log-probs per token, drop
finished rows from the KV cache as they finish and let waiting prompts take their places (continuous batching,
`hf_loop.py`), and reuse the KV of recently seen token prefixes across calls (`prefix_cache.py`, opt-in with
`prefix_cache_mb`; off by default because a sampler whose model is being trained, as in online RL, must not
reuse KV computed by older weights: the cache also clears itself when parameters change in place).

Prompts: chat-message lists go through the tokenizer's chat template with `add_generation_prompt=True`; plain
strings too, as a single user turn, unless the sampler is built with `raw=True` (base models, URIAL, the base side
of Nudging: spec C2.1), in which case the string is the exact model input. `template` is training's rule
(`alignkit.data.tokenize`: auto, always, never, chat-only = TRL's), so a model is sampled as it was trained.
Batches are LEFT padded, with position ids from the attention mask, so a prompt's result does not depend on its
batch (checked by tests: greedy batched == greedy alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignkit.data.records import Prompt
from alignkit.decode.fast_head import transposed_head
from alignkit.decode.hf_loop import cache_of, generate
from alignkit.decode.prefix_cache import BLOCK, PrefixCache, past_from_entries, row_kv, supported
from alignkit.decode.sampler import Compute, Prefix, Sample, TopToken, seed_for
from alignkit.errors import ConfigError, DataError


def _check_decoding(max_new_tokens: int, temperature: float, top_p: float, top_k: int, n: int = 1) -> None:
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not math.isfinite(temperature):
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ConfigError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, W]` ids and attention mask with every row right-aligned (left padding; an empty row is all padding):
    the layout generation and last-token reads use."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[r, width - len(s):] = 1
    return ids, mask


class HFSampler:
    """Sampler over a transformers causal LM (KV cache, batched, left padding, stop strings, exact token counts).

    Args:
        model, tokenizer: e.g. from `alignkit.models.load_model`.
        raw: feed plain-string prompts verbatim (no chat template); chat lists still use the template.
        template: how prompts meet the chat template, as in training (`TrainConfig.template`; default auto:
            plain strings as one user turn). `raw=True` is `chat-only` (`alignkit.data.tokenize.sampler_template`).
        max_batch_rows: at most this many sequences (prompts × n) per forward pass; waiting prompts join the
            running batch as rows finish.
        prefix_cache_mb: memory budget of the prefix KV cache in MiB (0 = off, the default). With it on,
            `sample` / `extend` / `score_logprobs` / `next_token_topk` reuse the KV of the longest stored prefix
            of each context, `Compute.forward_tokens` counts only the tokens really processed and
            `Compute.cached_tokens` the reused ones. Results equal the uncached ones up to float rounding
            (tests/test_prefix_cache.py).
        share_prompt_prefix: within one call, encode the longest token prefix common to all rows of a forward
            batch once instead of once per row (default on; independent of `prefix_cache_mb`, nothing outlives
            the call; rows that join the running batch later reuse it too). `Compute.forward_tokens` counts the
            shared tokens once and `cached_tokens` the reuses.
        progress: a progress bar over the rows of each `sample`/`extend` call that has more rows than one forward
            batch (a long call with continuous batching would otherwise be silent until it returns).
    """

    def __init__(self, model: Any, tokenizer: Any, *, raw: bool = False, template: str = "auto",
                 max_batch_rows: int = 64, prefix_cache_mb: float = 0, share_prompt_prefix: bool = True,
                 progress: bool = False) -> None:
        from alignkit.data.tokenize import sampler_template

        if tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to eos) first")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = sampler_template(template, raw)
        self.raw = self.template in ("chat-only", "never")  # plain strings are fed verbatim (URIAL checks this)
        self.max_batch_rows = max(1, int(max_batch_rows))
        self.progress = progress
        self.share_prompt_prefix = share_prompt_prefix
        self._share_unsupported = False  # set when the model's cache layers cannot take a shared prefix
        # inside a generate call: [the last shared prefix encoded, as (token ids, per-layer KV)], so rows that join
        # the running batch later (continuous batching refills a few at a time) reuse it; None outside a call, as
        # the weights may change between calls
        self._call_prefix: list[tuple[list[int], Any]] | None = None
        self.compute = Compute()
        if prefix_cache_mb < 0:
            raise ConfigError(f"prefix_cache_mb must be >= 0 (0 = off), got {prefix_cache_mb}")
        self.prefix_cache = PrefixCache(prefix_cache_mb) if prefix_cache_mb > 0 else None
        # forward tokens per row of the last score_logprobs / next_token_topk call (strategies split compute by it)
        self.last_row_forward_tokens: list[int] = []
        self.device = next(model.parameters()).device
        eos: set[int] = set()
        for src in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, (list, tuple)):
                eos.update(int(e) for e in src)
        self.eos_ids = eos
        # transformers 5.x renamed `past_key_values` to `cache`; support both spellings
        import inspect

        from alignkit.train.logps import unwrap_causal_lm

        # a peft wrapper's forward takes **kwargs; the wrapped model's signature says which name it wants
        params = inspect.signature(unwrap_causal_lm(model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ---------------------------------------------------------------- encoding
    def encode_prompt(self, prompt: Prompt, index: int = 0) -> list[int]:
        """Token ids of the model input for one prompt, by the shared rules of `alignkit.data.tokenize` (so
        sampling and training see the same tokens), under the sampler's `template`."""
        from alignkit.data.tokenize import encode_prompt

        if not isinstance(prompt, str) and not (isinstance(prompt, list) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in prompt)):
            raise DataError(f"prompt {index} must be a string or a list of {{'role', 'content'}} messages, "
                            f"got {type(prompt).__name__}")
        ids = encode_prompt(self.tokenizer, prompt, self.template)
        if not ids:
            raise DataError(f"prompt {index} encodes to zero tokens; give the model something to condition on")
        return list(ids)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _prefix_ids(self, prefix: Prefix) -> list[int]:
        if isinstance(prefix, str):
            return self.tokenize(prefix)
        return [int(t) for t in prefix]

    # ---------------------------------------------------------------- protocol
    # `sample` takes `reject`: per prompt, a test of the partial text that stops a doomed row early
    supports_reject = True

    def sample(self, prompts: Sequence[Prompt], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None,
               reject: Sequence[Callable[[str], bool] | None] | None = None) -> list[list[Sample]]:
        """As the protocol; `reject` (one entry per prompt, None for none): a row whose partial text it condemns
        stops with finish reason `rejected` (`alignkit.rewards.early_reject`); the other rows are unchanged."""
        _check_decoding(max_new_tokens, temperature, top_p, top_k, n)
        if reject is not None and len(reject) != len(prompts):
            raise ConfigError(f"sample got {len(reject)} reject tests for {len(prompts)} prompts")
        self._begin()
        contexts = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        flat = self._generate(contexts, [[] for _ in contexts], n, max_new_tokens, temperature, top_p, top_k,
                              stop, seed, reject)
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    # `extend` takes one max_new_tokens per row (QAlign continues every chain with its own budget in one call)
    per_row_budgets = True

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], max_new_tokens: int | Sequence[int] = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        """As the protocol; `max_new_tokens` may also be a list with one budget per row."""
        if len(prefixes) != len(prompts):
            raise ConfigError(f"extend got {len(prompts)} prompts but {len(prefixes)} prefixes")
        if not isinstance(max_new_tokens, int):
            if len(max_new_tokens) != len(prompts):
                raise ConfigError(f"extend got {len(max_new_tokens)} max_new_tokens for {len(prompts)} prompts")
            for b in max_new_tokens:
                _check_decoding(int(b), temperature, top_p, top_k)
            max_new_tokens = [int(b) for b in max_new_tokens]
        else:
            _check_decoding(max_new_tokens, temperature, top_p, top_k)
        self._begin()
        prefix_ids = [self._prefix_ids(p) for p in prefixes]
        contexts = [self.encode_prompt(p, i) + pre for i, (p, pre) in enumerate(zip(prompts, prefix_ids, strict=True))]
        return self._generate(contexts, prefix_ids, 1, max_new_tokens, temperature, top_p, top_k, stop, seed)

    @torch.inference_mode()
    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        """Teacher-forced log p(c_t | x, c_<t) at completion positions only: with left padding every completion
        ends the row, so `logits_to_keep = max completion length + 1` keeps exactly the positions needed."""
        if len(completions) != len(prompts):
            raise ConfigError(f"score_logprobs got {len(prompts)} prompts but {len(completions)} completions")
        self._begin()
        ctx = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        comp = [self._prefix_ids(c) for c in completions]
        out: list[list[float]] = [[] for _ in prompts]
        per_row = [0] * len(prompts)
        order = [i for i in range(len(prompts)) if comp[i]]
        for start in range(0, len(order), self.max_batch_rows):
            idx = order[start:start + self.max_batch_rows]
            seqs = [ctx[i] + comp[i] for i in idx]
            keep = max(len(comp[i]) for i in idx) + 1
            # reuse at most the prompt minus its last token: the logits that predict the completion are needed
            logits, cache, mask, _, done, hit = self._prefill(seqs, [len(ctx[i]) - 1 for i in idx], keep,
                                                              use_cache=False)
            logits = logits.float()
            logz = torch.logsumexp(logits, dim=-1)
            for r, i in enumerate(idx):
                m = len(comp[i])
                # logits[r, j] predicts the token at row position T-keep+j+1
                lg = logits[r, keep - m - 1:keep - 1]
                tgt = torch.tensor(comp[i], device=lg.device)
                lp = lg.gather(-1, tgt[:, None]).squeeze(-1) - logz[r, keep - m - 1:keep - 1]
                out[i] = lp.tolist()
                per_row[i] = done[r]
            self._store_rows(seqs, cache, mask)
            self.compute.forward_tokens += sum(done)
            self.compute.cached_tokens += sum(hit)
        self.last_row_forward_tokens = per_row
        return out

    @torch.inference_mode()
    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int) -> list[list[TopToken]]:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if len(prefixes) != len(prompts):
            raise ConfigError(f"next_token_topk got {len(prompts)} prompts but {len(prefixes)} prefixes")
        self._begin()
        seqs = [self.encode_prompt(p, i) + self._prefix_ids(pre)
                for i, (p, pre) in enumerate(zip(prompts, prefixes, strict=True))]
        result: list[list[TopToken]] = []
        per_row: list[int] = []
        for start in range(0, len(seqs), self.max_batch_rows):
            chunk = seqs[start:start + self.max_batch_rows]
            logits, cache, mask, _, done, hit = self._prefill(chunk, [len(s) - 1 for s in chunk], 1, use_cache=False)
            lp = torch.log_softmax(logits[:, -1].float(), dim=-1)
            vals, toks = lp.topk(min(k, lp.shape[-1]), dim=-1)
            for v_row, t_row in zip(vals.tolist(), toks.tolist(), strict=True):
                result.append([TopToken(t, self.tokenizer.decode([t]), v, t in self.eos_ids) for t, v in zip(t_row, v_row, strict=True)])
            self._store_rows(chunk, cache, mask)
            self.compute.forward_tokens += sum(done)
            self.compute.cached_tokens += sum(hit)
            per_row.extend(done)
        self.last_row_forward_tokens = per_row
        return result

    # ---------------------------------------------------------------- internals
    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = left_pad(seqs, self.tokenizer.pad_token_id)
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def _generate(self, contexts: list[list[int]], prefixes: list[list[int]], n: int, max_new_tokens: int | list[int],
                  temperature: float, top_p: float, top_k: int, stop: Sequence[str], seed: int | None,
                  reject: Sequence[Callable[[str], bool] | None] | None = None) -> list[Sample]:
        """All samples, prompt-major (prompt i's samples at i*n .. i*n+n-1); max_new_tokens per prompt or one."""
        budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(contexts)
        self._call_prefix = []
        try:
            with transposed_head(self.model):  # the decode loop's head projection: W @ h.T (decode/fast_head.py)
                return generate(self, contexts, prefixes, n, budgets, temperature, top_p, top_k, stop, seed, reject)
        finally:
            self._call_prefix = None

    def _generator(self, seed: int | None, key: tuple[int, int]) -> torch.Generator:
        g = torch.Generator(device="cpu")
        s = seed_for(seed, *key)
        g.manual_seed(int(torch.randint(0, 2**62, (1,)).item()) if s is None else s)
        return g

    def _prefill(self, seqs: list[list[int]], caps: list[int], keep: int = 1, use_cache: bool = True
                 ) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor, list[int], list[int]]:
        """One forward over left-padded `seqs`, reusing cached KV for at most caps[r] leading tokens of row r.

        Returns (logits of the last `keep` positions, cache, attention mask over the cache's columns, each row's
        last position id, tokens processed per row, tokens reused per row). Without a cache hit this is exactly
        the plain left-padded forward; with hits, row r's reused KV is left-padded into a past block and its
        remaining tokens are left-padded after it (padding between is masked; position ids follow the mask)."""
        pc = self.prefix_cache
        hits = [pc.lookup(s, c) for s, c in zip(seqs, caps, strict=True)] if pc is not None else []
        shared = 0
        if not any(m for m, _ in hits) and self.share_prompt_prefix and not self._share_unsupported:
            hits, shared = self._shared_prefix(seqs, caps)
        if not any(m for m, _ in hits):
            ids, mask = self._left_pad(seqs)
            positions = self._positions(mask)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=use_cache or pc is not None, logits_to_keep=keep)
            done = [len(s) for s in seqs]
            done[0] += shared  # a shared-prefix forward whose KV the model's cache could not take
            return out.logits, cache_of(out), mask, positions[:, -1], done, [0] * len(seqs)
        past, past_mask = past_from_entries(hits, self.device)
        suffixes = [s[m:] for s, (m, _) in zip(seqs, hits, strict=True)]
        ids, suffix_mask = self._left_pad(suffixes)
        mask = torch.cat([past_mask, suffix_mask], dim=1)
        positions = self._positions(mask)[:, past_mask.shape[1]:]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=keep, **{self._cache_kw: past})
        done, reused = [len(s) for s in suffixes], [m for m, _ in hits]
        if shared:  # the shared prefix was processed once, for row 0; the other rows reuse it
            done[0], reused[0] = done[0] + shared, 0
        return out.logits, cache_of(out), mask, positions[:, -1], done, reused

    def _shared_prefix(self, seqs: list[list[int]], caps: list[int]) -> tuple[list[tuple[int, Any]], int]:
        """Encode the rows' longest common prefix once (batch 1) as a hit for every row, as engines with prefix
        sharing do (vLLM's automatic prefix caching, SGLang's RadixAttention): a chat template's system prompt
        makes most of a short prompt common to every row. ([], 0) when fewer than two rows or under BLOCK tokens
        are common; ([], common) when the model's cache layers (sliding windows) cannot take the KV: that forward
        is still counted, once per sampler. The KV equals the per-row one up to float rounding (batch 1 vs a
        padded batch).

        Within a generate call, rows that all start with the prefix encoded last reuse it, a single row included
        (then shared is 0: nothing was processed now)."""
        if self._call_prefix:
            head, kv = self._call_prefix[0]
            if all(c >= len(head) and s[:len(head)] == head for s, c in zip(seqs, caps, strict=True)):
                return [(len(head), kv)] * len(seqs), 0
        if len(seqs) < 2:
            return [], 0
        common = min(min(caps), min(len(s) for s in seqs))
        first = seqs[0]
        for s in seqs[1:]:
            common = next((j for j in range(common) if s[j] != first[j]), common)
        if common < BLOCK:
            return [], 0
        ids = torch.tensor([first[:common]], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = cache_of(out)
        if not supported(cache):  # sliding-window or other layer kinds: their KV cannot be merged this way
            self._share_unsupported = True  # found once per sampler; the user's setting is left as it was
            return [], common  # no hits, but that forward was real: the caller counts it
        kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]
        if self._call_prefix is not None:
            self._call_prefix[:] = [(first[:common], kv)]
        return [(common, kv)] * len(seqs), common

    def _store_rows(self, seqs: list[list[int]], cache: Any, mask: torch.Tensor) -> None:
        if self.prefix_cache is not None and cache is not None and supported(cache):
            for b, s in enumerate(seqs):
                self.prefix_cache.store(s, row_kv(cache, b, mask[b]))

    def _begin(self) -> None:
        if self.prefix_cache is not None:
            self.prefix_cache.check_model(self.model)

    def _text(self, prefix: list[int], new: list[int], reason: str, stop: Sequence[str]) -> tuple[str, str]:
        if prefix:  # decode with the prefix so token-boundary merges come out right
            head = self.decode(prefix)
            text = self.decode(prefix + new)[len(head):]
        else:
            text = self.decode(new)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            return text[:min(cuts)], "stop"
        return text, reason

