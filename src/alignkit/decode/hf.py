"""`HFSampler`: the Sampler protocol over a Hugging Face causal LM, with its own decode loop.

Why a custom loop rather than `model.generate`: it lets every call count tokens exactly, encode a prompt once for
`n` samples (prefill, then `DynamicCache.batch_repeat_interleave`), give each row its own seeded random stream (so
a row's sample does not depend on what else is batched with it), return raw-model log-probs per token, and drop
finished rows from the KV cache as they finish.

Prompts: chat-message lists go through the tokenizer's chat template with `add_generation_prompt=True`; plain
strings too, as a single user turn, unless the sampler is built with `raw=True` (base models, URIAL, the base side
of Nudging: spec C2.1), in which case the string is the exact model input.
Batches are LEFT padded, with position ids from the attention mask, so a prompt's result does not depend on its
batch (checked by tests: greedy batched == greedy alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignkit.data.records import Prompt
from alignkit.decode.sampler import Compute, Prefix, Sample, TopToken, seed_for
from alignkit.errors import ConfigError, DataError


@dataclass
class _Row:
    context: list[int]  # prompt (+ prefix) ids
    key: tuple[int, int]  # (prompt index in the call, sample index) for seeding
    prefix: list[int]  # prefix ids (extend), for decoding text relative to the prefix


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


class HFSampler:
    """Sampler over a transformers causal LM (KV cache, batched, left padding, stop strings, exact token counts).

    Args:
        model, tokenizer: e.g. from `alignkit.models.load_model`.
        raw: feed plain-string prompts verbatim (no chat template); chat lists still use the template.
        max_batch_rows: at most this many sequences (prompts × n) per forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, *, raw: bool = False, max_batch_rows: int = 64) -> None:
        if tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to eos) first")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.raw = raw
        self.max_batch_rows = max(1, int(max_batch_rows))
        self.compute = Compute()
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
        sampling and training see the same tokens): chat template unless raw and a plain string."""
        from alignkit.data.tokenize import encode_prompt

        if not isinstance(prompt, str) and not (isinstance(prompt, list) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in prompt)):
            raise DataError(f"prompt {index} must be a string or a list of {{'role', 'content'}} messages, "
                            f"got {type(prompt).__name__}")
        ids = encode_prompt(self.tokenizer, prompt, "never" if (self.raw and isinstance(prompt, str)) else "always")
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
    def sample(self, prompts: Sequence[Prompt], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None
               ) -> list[list[Sample]]:
        _check_decoding(max_new_tokens, temperature, top_p, top_k, n)
        contexts = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        flat = self._generate(contexts, [[] for _ in contexts], n, max_new_tokens, temperature, top_p, top_k,
                              stop, seed)
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
        prefix_ids = [self._prefix_ids(p) for p in prefixes]
        contexts = [self.encode_prompt(p, i) + pre for i, (p, pre) in enumerate(zip(prompts, prefix_ids, strict=True))]
        return self._generate(contexts, prefix_ids, 1, max_new_tokens, temperature, top_p, top_k, stop, seed)

    @torch.inference_mode()
    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        """Teacher-forced log p(c_t | x, c_<t) at completion positions only: with left padding every completion
        ends the row, so `logits_to_keep = max completion length + 1` keeps exactly the positions needed."""
        if len(completions) != len(prompts):
            raise ConfigError(f"score_logprobs got {len(prompts)} prompts but {len(completions)} completions")
        ctx = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        comp = [self._prefix_ids(c) for c in completions]
        out: list[list[float]] = [[] for _ in prompts]
        order = [i for i in range(len(prompts)) if comp[i]]
        for start in range(0, len(order), self.max_batch_rows):
            idx = order[start:start + self.max_batch_rows]
            seqs = [ctx[i] + comp[i] for i in idx]
            ids, mask = self._left_pad(seqs)
            keep = max(len(comp[i]) for i in idx) + 1
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask),
                                use_cache=False, logits_to_keep=keep).logits.float()
            logz = torch.logsumexp(logits, dim=-1)
            for r, i in enumerate(idx):
                m = len(comp[i])
                # logits[r, j] predicts the token at row position T-keep+j+1
                lg = logits[r, keep - m - 1:keep - 1]
                tgt = torch.tensor(comp[i], device=lg.device)
                lp = lg.gather(-1, tgt[:, None]).squeeze(-1) - logz[r, keep - m - 1:keep - 1]
                out[i] = lp.tolist()
            self.compute.forward_tokens += sum(len(s) for s in seqs)
        return out

    @torch.inference_mode()
    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int) -> list[list[TopToken]]:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if len(prefixes) != len(prompts):
            raise ConfigError(f"next_token_topk got {len(prompts)} prompts but {len(prefixes)} prefixes")
        seqs = [self.encode_prompt(p, i) + self._prefix_ids(pre) for i, (p, pre) in enumerate(zip(prompts, prefixes, strict=True))]
        result: list[list[TopToken]] = []
        for start in range(0, len(seqs), self.max_batch_rows):
            chunk = seqs[start:start + self.max_batch_rows]
            ids, mask = self._left_pad(chunk)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask),
                                use_cache=False, logits_to_keep=1).logits[:, -1].float()
            lp = torch.log_softmax(logits, dim=-1)
            vals, toks = lp.topk(min(k, lp.shape[-1]), dim=-1)
            for v_row, t_row in zip(vals.tolist(), toks.tolist(), strict=True):
                result.append([TopToken(t, self.tokenizer.decode([t]), v, t in self.eos_ids) for t, v in zip(t_row, v_row, strict=True)])
            self.compute.forward_tokens += sum(len(s) for s in chunk)
        return result

    # ---------------------------------------------------------------- internals
    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            if s:
                ids[r, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
                mask[r, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def _generate(self, contexts: list[list[int]], prefixes: list[list[int]], n: int, max_new_tokens: int | list[int],
                  temperature: float, top_p: float, top_k: int, stop: Sequence[str], seed: int | None
                  ) -> list[Sample]:
        """All samples, prompt-major (prompt i's samples at i*n .. i*n+n-1); max_new_tokens per prompt or one."""
        out: list[Sample] = []
        per_chunk = max(1, self.max_batch_rows // n)
        budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(contexts)
        for start in range(0, len(contexts), per_chunk):
            idx = list(range(start, min(len(contexts), start + per_chunk)))
            out.extend(self._generate_chunk([contexts[i] for i in idx], [prefixes[i] for i in idx], idx, n,
                                            [budgets[i] for i in idx], temperature, top_p, top_k, stop, seed))
        return out

    def _generator(self, seed: int | None, key: tuple[int, int]) -> torch.Generator:
        g = torch.Generator(device="cpu")
        s = seed_for(seed, *key)
        g.manual_seed(int(torch.randint(0, 2**62, (1,)).item()) if s is None else s)
        return g

    @torch.inference_mode()
    def _generate_chunk(self, contexts: list[list[int]], prefixes: list[list[int]], keys: list[int], n: int,
                        budgets: list[int], temperature: float, top_p: float, top_k: int, stop: Sequence[str],
                        seed: int | None) -> list[Sample]:
        stop = [s for s in stop if s]
        tail_tokens = max((len(s) for s in stop), default=0) + 1
        ids, mask = self._left_pad(contexts)
        positions = self._positions(mask)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = _cache_of(out)
        logits = out.logits[:, -1]
        last_pos = positions[:, -1]
        if n > 1:  # one prompt encoding shared by n samples
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            last_pos = last_pos.repeat_interleave(n, dim=0)
        rows = len(contexts) * n
        gens = [self._generator(seed, (keys[r // n], r % n)) for r in range(rows)]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        raw_lps: list[list[float]] = [[] for _ in range(rows)]
        sample_lp = [0.0] * rows
        finish = [""] * rows
        alive = list(range(rows))  # batch position -> row id
        for step in range(max(budgets)):
            logits_f = logits.float()
            raw = torch.log_softmax(logits_f, dim=-1)
            if temperature == 0:
                tok = raw.argmax(dim=-1)
                chosen_lp = torch.zeros(len(alive))
            else:
                if temperature == 1.0 and top_p >= 1.0 and not top_k:
                    logq = raw  # the raw distribution already: skip a second softmax
                else:
                    logq = torch.log_softmax(_truncate(logits_f / temperature, top_p, top_k), dim=-1)
                # Gumbel-max with each row's own generator: robust to the tiny float differences between a
                # batched and an unbatched forward (inverse-CDF sampling over a 50k cumsum is not)
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
                if t in self.eos_ids:
                    finish[r] = "eos"
                elif stop and any(s in self.tokenizer.decode(tokens[r][-tail_tokens:]) for s in stop):
                    finish[r] = "stop"
                elif step == budgets[r // n] - 1:
                    finish[r] = "length"
                else:
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(alive):  # drop finished rows from the cache: no compute on dead rows
                sel = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(sel)
                mask, last_pos, tok = mask[sel], last_pos[sel], tok[sel]
                alive = [alive[b] for b in keep]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=mask.device)], dim=1)
            last_pos = last_pos + 1
            out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                             use_cache=True, **{self._cache_kw: cache})
            cache = _cache_of(out)
            logits = out.logits[:, -1]
        samples = []
        for r in range(rows):
            prompt_i = r // n
            share = (len(contexts[prompt_i]) if r % n == 0 else 0) + len(tokens[r]) - 1
            text, reason = self._text(prefixes[prompt_i], tokens[r], finish[r], stop)
            samples.append(Sample(text=text, token_ids=tokens[r], logprob=sample_lp[r], finish_reason=reason,
                                  token_logprobs=raw_lps[r], forward_tokens=share))
        self.compute.forward_tokens += sum(s.forward_tokens for s in samples)
        self.compute.generated_tokens += sum(len(s.token_ids) for s in samples)
        return samples

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


def _cache_of(out: Any) -> Any:
    cache = out.get("cache")
    return out.get("past_key_values") if cache is None else cache


def _truncate(logits: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
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
