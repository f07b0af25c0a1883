"""The prefix KV cache of HFSampler (issue 18, item 1): every cached path gives the results of the uncached
sampler (tokens identical, log-probs equal to float rounding), and Compute counts only the tokens a forward pass
really processed, with the reused ones in `cached_tokens`."""

from __future__ import annotations

import pytest
import torch

from alignkit.decode.hf import HFSampler
from alignkit.decode.prefix_cache import BLOCK, PrefixCache
from alignkit.errors import ConfigError
from alignkit.models import load_model

PROMPTS = ["Hi", "Write a short poem about the sea, please.", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def model_tok():  # noqa: ANN201
    return load_model("tiny-random")


@pytest.fixture()
def pair(model_tok):  # noqa: ANN001, ANN201
    # within-call prefix sharing off: these tests count what the cross-call cache alone reuses
    return (HFSampler(*model_tok, share_prompt_prefix=False),
            HFSampler(*model_tok, prefix_cache_mb=64, share_prompt_prefix=False))


def test_extend_after_a_sample_reuses_the_stored_prefix(pair) -> None:  # noqa: ANN001
    plain, cached = pair
    first = cached.sample(PROMPTS, max_new_tokens=8, temperature=0)
    assert cached.compute.cached_tokens == 0  # nothing stored yet
    prefixes = [row[0].token_ids[:3] for row in first]
    before = cached.compute.copy()
    got = cached.extend(PROMPTS, prefixes, max_new_tokens=5, temperature=0)
    want = plain.extend(PROMPTS, prefixes, max_new_tokens=5, temperature=0)
    assert [s.token_ids for s in got] == [s.token_ids for s in want]
    for g, w in zip(got, want, strict=True):
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=1e-5)
    delta = cached.compute.minus(before)
    ctx = [len(cached.encode_prompt(p)) + 3 for p in PROMPTS]
    # each context but its last token came from the cache: one token of prefill per row, then 4 fed back
    assert delta.cached_tokens == sum(c - 1 for c in ctx)
    assert delta.forward_tokens == len(PROMPTS) * (1 + 4)
    assert [s.cached_tokens for s in got] == [c - 1 for c in ctx]
    assert [s.forward_tokens for s in got] == [5] * len(PROMPTS)


def test_seeded_samples_and_logprobs_are_unchanged_by_cache_hits(pair) -> None:  # noqa: ANN001
    plain, cached = pair
    cached.sample(PROMPTS, n=2, max_new_tokens=6, seed=1)  # fills the cache with every prompt
    got = cached.sample(PROMPTS, n=3, max_new_tokens=6, seed=4)
    want = plain.sample(PROMPTS, n=3, max_new_tokens=6, seed=4)
    assert cached.compute.cached_tokens > 0
    for g_row, w_row in zip(got, want, strict=True):
        assert [s.token_ids for s in g_row] == [s.token_ids for s in w_row]
        for g, w in zip(g_row, w_row, strict=True):
            assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=1e-5)
            assert g.logprob == pytest.approx(w.logprob, abs=1e-4)


def test_score_logprobs_with_and_without_cache(pair) -> None:  # noqa: ANN001
    plain, cached = pair
    samples = [row[0] for row in cached.sample(PROMPTS, max_new_tokens=7, seed=2)]
    comps = [s.token_ids for s in samples]
    before = cached.compute.copy()
    got = cached.score_logprobs(PROMPTS, comps)
    want = plain.score_logprobs(PROMPTS, comps)
    for g, w, s in zip(got, want, samples, strict=True):
        assert g == pytest.approx(w, abs=1e-5)
        assert g == pytest.approx(s.token_logprobs, abs=1e-4)
    delta = cached.compute.minus(before)
    plens = [len(cached.encode_prompt(p)) for p in PROMPTS]
    # the prompt minus its last token is reused; the last prompt token and the 7 completion tokens are processed
    assert delta.cached_tokens == sum(p - 1 for p in plens)
    assert delta.forward_tokens == len(PROMPTS) * 8
    assert cached.last_row_forward_tokens == [8] * len(PROMPTS)


def test_next_token_topk_with_and_without_cache_and_a_mixed_batch(pair) -> None:  # noqa: ANN001
    plain, cached = pair
    cached.next_token_topk(PROMPTS[:2], [[11, 12], [13]], k=4)  # stores two of the contexts
    prefixes = [[11, 12, 14], [13, 15, 16, 17], [18]]  # rows 0, 1 hit; row 2 shares only the chat template
    before = cached.compute.copy()
    got = cached.next_token_topk(PROMPTS, prefixes, k=4)
    want = plain.next_token_topk(PROMPTS, prefixes, k=4)
    for g, w in zip(got, want, strict=True):
        assert [t.token_id for t in g] == [t.token_id for t in w]
        assert [t.logprob for t in g] == pytest.approx([t.logprob for t in w], abs=1e-5)
    enc = [cached.encode_prompt(p) for p in PROMPTS]
    shared = max(_common(enc[2], enc[0]), _common(enc[2], enc[1]))  # the system prompt of the template
    assert shared >= BLOCK
    assert cached.last_row_forward_tokens == [1, 3, len(enc[2]) + 1 - shared]
    assert cached.compute.minus(before).cached_tokens == len(enc[0]) + 2 + len(enc[1]) + 1 + shared


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_weight_updates_and_hooks_clear_the_cache(model_tok) -> None:  # noqa: ANN001
    model, tok = load_model("tiny-random")  # own copy: this test changes weights
    s = HFSampler(model, tok, prefix_cache_mb=64)
    s.sample(PROMPTS[:1], max_new_tokens=4, temperature=0)
    assert len(s.prefix_cache) == 1
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # what optimizer.step and load_state_dict do: an in-place update
    before = s.compute.copy()
    s.sample(PROMPTS[:1], max_new_tokens=4, temperature=0)
    assert s.compute.minus(before).cached_tokens == 0
    handle = model.model.layers[0].register_forward_hook(lambda m, i, o: o)  # e.g. a steering hook
    before = s.compute.copy()
    s.sample(PROMPTS[:1], max_new_tokens=4, temperature=0)
    assert s.compute.minus(before).cached_tokens == 0
    handle.remove()


def test_lru_eviction_keeps_the_budget_and_longest_prefix_wins() -> None:
    def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.zeros(1, n, 4), torch.zeros(1, n, 4))]  # 2 * n * 4 floats = 32n bytes

    c = PrefixCache(budget_mb=(32 * 100) / 2**20)  # room for 100 tokens
    a, b = list(range(40)), list(range(30)) + [99] * 20
    c.store(a, kv(40))
    c.store(b, kv(50))
    assert c.nbytes == 32 * 90
    query = list(range(35)) + [7, 7]
    m, got = c.lookup(query, cap=len(query) - 1)
    assert m == 35 and got is c.entries[tuple(a)].kv  # the common prefix ends inside entry a
    assert c.lookup(list(range(BLOCK - 1)) + [5], cap=99)[0] == 0  # under one block: not indexed
    c.store(list(range(100, 140)), kv(40))  # over budget: evicts b, the least recently used (a was just hit)
    assert tuple(b) not in c.entries and tuple(a) in c.entries and c.nbytes <= c.budget
    assert c.lookup(b, cap=50)[0] == 40 - 10  # b's own tail is gone; a still covers its first 30 tokens


def test_bad_budget_is_a_config_error(model_tok) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="prefix_cache_mb"):
        HFSampler(*model_tok, prefix_cache_mb=-1)
