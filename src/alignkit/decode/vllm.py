"""`VLLMSampler`: the Sampler protocol over vLLM (optional; GPU only; not exercised in CI).

Install vLLM yourself (`pip install vllm`, CUDA required); the import is guarded so alignkit works without it.
Mapping to the protocol:
- `sample`: `SamplingParams(n=n, temperature, top_p, top_k=-1 if 0, stop, seed, max_tokens, logprobs=0)`;
  vLLM shares the prompt's KV cache across the n samples (prefix caching on by default in recent versions).
- `extend`: the prompt ids + prefix ids are passed as `TokensPrompt(prompt_token_ids=...)` so QAlign's token-level
  states are exact; text is decoded relative to the prefix as in HFSampler.
- `score_logprobs`: `prompt_logprobs=0` on prompt+completion, read at completion positions.
- `next_token_topk`: one token with `logprobs=k` at temperature 1 (raw model distribution).
Token accounting follows the protocol convention (prompt tokens charged once per prompt; each generated token
but the last fed back). With prefix caching the real compute is lower than what is counted; the count is the
hardware-independent quantity the strategies are compared on.
Greedy = temperature 0. `token_logprobs` are the raw log-probs vLLM returns for the sampled tokens (vLLM reports
log-probs of the raw model by default in recent versions; check `logprobs_mode` on older ones).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from alignkit.data.records import Prompt
from alignkit.decode.sampler import Compute, Prefix, Sample, TopToken
from alignkit.errors import ConfigError, ModelError


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VLLMSampler:
    def __init__(self, model: str, *, raw: bool = False, template: str = "auto", tokenizer: Any = None,
                 **llm_kwargs: Any) -> None:
        from alignkit.data.tokenize import sampler_template

        if not vllm_available():
            raise ModelError("VLLMSampler needs vllm (pip install vllm; a CUDA GPU is required). "
                             "Use HFSampler on CPU.")
        from vllm import LLM

        self.llm = LLM(model=model, **llm_kwargs)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        self.template = sampler_template(template, raw)  # HFSampler's rule, so both backends see the same inputs
        self.raw = self.template in ("chat-only", "never")
        self.compute = Compute()
        self.eos_ids = {self.tokenizer.eos_token_id}

    def encode_prompt(self, prompt: Prompt, index: int = 0) -> list[int]:
        """The shared rule of `alignkit.data.tokenize`, as in HFSampler, so both backends see identical inputs."""
        from alignkit.data.tokenize import encode_prompt

        return list(encode_prompt(self.tokenizer, prompt, self.template))

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _ids(self, prefix: Prefix) -> list[int]:
        return self.tokenize(prefix) if isinstance(prefix, str) else [int(t) for t in prefix]

    def _params(self, n: int, max_new_tokens: int, temperature: float, top_p: float, top_k: int,
                stop: Sequence[str], seed: int | None, **extra: Any) -> Any:
        from vllm import SamplingParams

        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        return SamplingParams(n=n, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              top_k=top_k if top_k > 0 else -1, stop=list(stop) or None, seed=seed, logprobs=0,
                              **extra)

    def _run(self, contexts: list[list[int]], prefixes: list[list[int]], params: Any) -> list[list[Sample]]:
        from vllm.inputs import TokensPrompt

        outs = self.llm.generate([TokensPrompt(prompt_token_ids=c) for c in contexts], params, use_tqdm=False)
        result = []
        for ctx, pre, out in zip(contexts, prefixes, outs, strict=True):
            row = []
            for j, comp in enumerate(out.outputs):
                ids = list(comp.token_ids)
                lps = [lp[t].logprob for lp, t in zip(comp.logprobs or [], ids, strict=False)]
                text = comp.text if not pre else self.decode(pre + ids)[len(self.decode(pre)):]
                reason = {"stop": "stop" if comp.stop_reason is not None and not isinstance(comp.stop_reason, int)
                          else "eos", "length": "length"}.get(comp.finish_reason or "length", "length")
                share = (len(ctx) if j == 0 else 0) + len(ids) - 1
                row.append(Sample(text, ids, float(comp.cumulative_logprob or 0.0), reason, lps, share))
            self.compute.forward_tokens += sum(s.forward_tokens for s in row)
            self.compute.generated_tokens += sum(len(s.token_ids) for s in row)
            result.append(row)
        return result

    def sample(self, prompts: Sequence[Prompt], n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (), seed: int | None = None
               ) -> list[list[Sample]]:
        ctx = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        return self._run(ctx, [[] for _ in ctx], self._params(n, max_new_tokens, temperature, top_p, top_k, stop, seed))

    def extend(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], max_new_tokens: int = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        pre = [self._ids(p) for p in prefixes]
        ctx = [self.encode_prompt(p, i) + x for i, (p, x) in enumerate(zip(prompts, pre, strict=True))]
        rows = self._run(ctx, pre, self._params(1, max_new_tokens, temperature, top_p, top_k, stop, seed))
        return [r[0] for r in rows]

    def score_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[Prefix]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ctx = [self.encode_prompt(p, i) for i, p in enumerate(prompts)]
        comp = [self._ids(c) for c in completions]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=c + x) for c, x in zip(ctx, comp, strict=True)],
                                 params, use_tqdm=False)
        result = []
        for c, x, out in zip(ctx, comp, outs, strict=True):
            plp = out.prompt_logprobs[len(c):]
            result.append([d[t].logprob for d, t in zip(plp, x, strict=True)])
            self.compute.forward_tokens += len(c) + len(x)
        return result

    def next_token_topk(self, prompts: Sequence[Prompt], prefixes: Sequence[Prefix], k: int) -> list[list[TopToken]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ctx = [self.encode_prompt(p, i) + self._ids(x) for i, (p, x) in enumerate(zip(prompts, prefixes, strict=True))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=c) for c in ctx],
                                 SamplingParams(max_tokens=1, logprobs=k, temperature=1.0), use_tqdm=False)
        result = []
        for c, out in zip(ctx, outs, strict=True):
            d = out.outputs[0].logprobs[0]
            top = sorted(d.items(), key=lambda kv: -kv[1].logprob)[:k]
            result.append([TopToken(t, self.decode([t]), lp.logprob, t in self.eos_ids) for t, lp in top])
            self.compute.forward_tokens += len(c)
        return result
