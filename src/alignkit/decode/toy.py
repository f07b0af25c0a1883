"""`ToySampler`: an exact, enumerable autoregressive "model" over a tiny vocabulary, implementing the full
(Token)Sampler protocol in pure Python. Used to test strategies against closed-form answers (e.g. QAlign's chain
must converge to p(y)·exp(r(y)/β)) and to instrument Nudging; also handy for examples.

A token is a string; the text of a sequence is the concatenation of its tokens (EOS contributes nothing).
`dist(prompt, tokens) -> {token: prob}` gives the next-token distribution; probabilities must sum to 1.
Accounting follows the protocol convention (sampler.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from alignkit.decode.sampler import Compute, Prefix, Sample, TopToken, seed_for
from alignkit.errors import ConfigError

EOS = "<eos>"
Dist = Callable[[Any, tuple[str, ...]], dict[str, float]]


class ToySampler:
    def __init__(self, vocab: Sequence[str], dist: Dist, prompt_tokens: int = 1) -> None:
        if EOS not in vocab:
            raise ConfigError(f"the toy vocabulary must contain {EOS!r}")
        self.vocab = list(vocab)
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        self.dist = dist
        self.prompt_tokens = prompt_tokens  # what one prompt "costs" to encode
        self.compute = Compute()
        self.calls: list[tuple[str, Any]] = []  # instrumentation: (method, prompt/prefix) per row

    # -- helpers
    def _probs(self, prompt: Any, toks: tuple[str, ...]) -> list[float]:
        d = self.dist(prompt, toks)
        total = sum(d.values())
        if abs(total - 1) > 1e-9:
            raise ConfigError(f"toy distribution sums to {total}, not 1, after {toks}")
        return [d.get(t, 0.0) for t in self.vocab]

    def tokenize(self, text: str) -> list[int]:
        """Greedy longest-match over the vocabulary."""
        out, i = [], 0
        words = sorted((t for t in self.vocab if t != EOS), key=len, reverse=True)
        while i < len(text):
            for w in words:
                if text.startswith(w, i):
                    out.append(self.ids[w])
                    i += len(w)
                    break
            else:
                raise ConfigError(f"toy tokenizer cannot tokenize {text[i:]!r}")
        return out

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(self.vocab[t] for t in token_ids if self.vocab[t] != EOS)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _ids(self, prefix: Prefix) -> list[int]:
        return self.tokenize(prefix) if isinstance(prefix, str) else [int(t) for t in prefix]

    def _one(self, prompt: Any, prefix: list[int], max_new: int, temperature: float, top_k: int, stop: Sequence[str],
             rng: random.Random) -> Sample:
        toks = tuple(self.vocab[t] for t in prefix)
        new: list[int] = []
        lp_sample = 0.0
        raw_lps: list[float] = []
        reason = "length"
        for _ in range(max_new):
            probs = self._probs(prompt, toks)
            if temperature == 0 or top_k == 1:
                j = max(range(len(probs)), key=lambda i: (probs[i], -i))
                q = 1.0
            else:
                w = [p ** (1 / temperature) if p > 0 else 0.0 for p in probs]
                if top_k:
                    kth = sorted(w, reverse=True)[min(top_k, len(w)) - 1]
                    w = [x if x >= kth else 0.0 for x in w]
                z = sum(w)
                u, acc, j = rng.random() * z, 0.0, len(w) - 1
                for i, x in enumerate(w):
                    acc += x
                    if u < acc and x > 0:
                        j = i
                        break
                q = w[j] / z
            new.append(j)
            raw_lps.append(math.log(probs[j]))
            lp_sample += math.log(q)
            toks = toks + (self.vocab[j],)
            if self.vocab[j] == EOS:
                reason = "eos"
                break
            text = self.decode(new)
            if any(s in text for s in stop if s):
                reason = "stop"
                break
        text = self.decode(new)
        cuts = [text.find(s) for s in stop if s and s in text]
        if cuts:
            text = text[:min(cuts)]
        return Sample(text, new, lp_sample, reason, raw_lps, 0)

    def _account(self, samples: list[Sample], context_tokens: list[int], n: int) -> None:
        for r, s in enumerate(samples):
            s.forward_tokens = (context_tokens[r // n] if r % n == 0 else 0) + len(s.token_ids) - 1
        self.compute.forward_tokens += sum(s.forward_tokens for s in samples)
        self.compute.generated_tokens += sum(len(s.token_ids) for s in samples)

    # -- protocol
    def sample(self, prompts: Sequence[Any], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None
               ) -> list[list[Sample]]:
        flat = []
        for i, p in enumerate(prompts):
            self.calls.append(("sample", p))
            for j in range(n):
                s = seed_for(seed, i, j)
                flat.append(self._one(p, [], max_new_tokens, temperature, top_k, stop,
                                      random.Random(s if s is not None else random.random())))
        self._account(flat, [self.prompt_tokens] * len(prompts), n)
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    def extend(self, prompts: Sequence[Any], prefixes: Sequence[Prefix], max_new_tokens: int = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        out, ctx = [], []
        for i, (p, pre) in enumerate(zip(prompts, prefixes, strict=True)):
            self.calls.append(("extend", (p, pre)))
            ids = self._ids(pre)
            s = seed_for(seed, i, 0)
            out.append(self._one(p, ids, max_new_tokens, temperature, top_k, stop,
                                 random.Random(s if s is not None else random.random())))
            ctx.append(self.prompt_tokens + len(ids))
        self._account(out, ctx, 1)
        return out

    def score_logprobs(self, prompts: Sequence[Any], completions: Sequence[Prefix]) -> list[list[float]]:
        out = []
        for p, c in zip(prompts, completions, strict=True):
            ids = self._ids(c)
            toks: tuple[str, ...] = ()
            lps = []
            for t in ids:
                lps.append(math.log(self._probs(p, toks)[t]))
                toks += (self.vocab[t],)
            out.append(lps)
            self.compute.forward_tokens += self.prompt_tokens + len(ids)
        return out

    def next_token_topk(self, prompts: Sequence[Any], prefixes: Sequence[Prefix], k: int) -> list[list[TopToken]]:
        out = []
        for p, pre in zip(prompts, prefixes, strict=True):
            self.calls.append(("topk", (p, pre)))
            ids = self._ids(pre)
            probs = self._probs(p, tuple(self.vocab[t] for t in ids))
            order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))[:k]
            out.append([TopToken(i, self.vocab[i] if self.vocab[i] != EOS else "",
                                 math.log(probs[i]) if probs[i] > 0 else -math.inf, self.vocab[i] == EOS)
                        for i in order])
            self.compute.forward_tokens += self.prompt_tokens + len(ids)
        return out

    # -- exact quantities for tests
    def enumerate_outputs(self, prompt: Any, max_new_tokens: int) -> dict[tuple[int, ...], float]:
        """Every reachable output (token ids, EOS included) with its probability under ancestral sampling capped
        at max_new_tokens."""
        out: dict[tuple[int, ...], float] = {}

        def walk(prefix: tuple[int, ...], p: float) -> None:
            if p == 0:
                return
            if prefix and (self.vocab[prefix[-1]] == EOS or len(prefix) == max_new_tokens):
                out[prefix] = out.get(prefix, 0.0) + p
                return
            probs = self._probs(prompt, tuple(self.vocab[t] for t in prefix))
            for j, q in enumerate(probs):
                walk(prefix + (j,), p * q)

        walk((), 1.0)
        return out


def fixed_dist(table: dict[str, float]) -> Dist:
    """The same next-token distribution at every position."""
    return lambda prompt, toks: dict(table)


__all__ = ["EOS", "ToySampler", "fixed_dist"]
