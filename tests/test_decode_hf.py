"""HFSampler: the Sampler protocol over a transformers model (tiny random Llama)."""

from __future__ import annotations

import pytest
import torch

from alignkit.decode.hf import HFSampler
from alignkit.decode.sampler import Sampler, TokenSampler
from alignkit.errors import ConfigError, DataError
from alignkit.models import load_model

PROMPTS = ["Hi", "Write a short poem about the sea, please.", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def sampler() -> HFSampler:
    model, tok = load_model("tiny-random")
    return HFSampler(model, tok)


def test_implements_protocols(sampler: HFSampler) -> None:
    assert isinstance(sampler, Sampler) and isinstance(sampler, TokenSampler)


def test_seeded_sampling_is_reproducible(sampler: HFSampler) -> None:
    a = sampler.sample(PROMPTS, n=2, max_new_tokens=8, seed=7)
    b = sampler.sample(PROMPTS, n=2, max_new_tokens=8, seed=7)
    c = sampler.sample(PROMPTS, n=2, max_new_tokens=8, seed=8)
    ids = lambda r: [[s.token_ids for s in row] for row in r]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    # the n samples of one prompt differ (independent streams)
    assert a[1][0].token_ids != a[1][1].token_ids


def test_n_samples_share_one_prompt_encoding(sampler: HFSampler) -> None:
    before = sampler.compute.copy()
    out = sampler.sample([PROMPTS[1]], n=4, max_new_tokens=6, seed=0)
    delta = sampler.compute.minus(before)
    plen = len(sampler.encode_prompt(PROMPTS[1]))
    fed_back = sum(len(s.token_ids) - 1 for s in out[0])
    assert delta.forward_tokens == plen + fed_back  # prompt charged once, not 4 times
    assert delta.generated_tokens == sum(len(s.token_ids) for s in out[0])
    assert [s.forward_tokens for s in out[0]] == [plen + len(out[0][0].token_ids) - 1] + [
        len(s.token_ids) - 1 for s in out[0][1:]]


def test_token_counts_exact_across_batch(sampler: HFSampler) -> None:
    before = sampler.compute.copy()
    out = sampler.sample(PROMPTS, n=3, max_new_tokens=5, seed=1)
    delta = sampler.compute.minus(before)
    ids = [sampler.encode_prompt(p) for p in PROMPTS]
    common = next(j for j in range(min(map(len, ids))) if len({row[j] for row in ids}) > 1)
    assert common >= 16  # the chat template's system turn: encoded once for the batch, reused by the other rows
    flat = [s for row in out for s in row]
    assert delta.forward_tokens == sum(map(len, ids)) - 2 * common + sum(len(s.token_ids) - 1 for s in flat)
    assert delta.cached_tokens == 2 * common
    assert delta.generated_tokens == sum(len(s.token_ids) for s in flat) == 3 * 3 * 5
    assert sum(s.forward_tokens for s in flat) == delta.forward_tokens
    assert all(s.finish_reason == "length" and len(s.token_logprobs) == 5 for s in flat)


def test_rows_that_join_the_running_batch_reuse_its_shared_prefix() -> None:
    model, tok = load_model("tiny-random")
    # two rows at a time, uneven budgets: prompts 2.. join one or two at a time as earlier rows finish
    on = HFSampler(model, tok, max_batch_rows=2)
    off = HFSampler(model, tok, max_batch_rows=2, share_prompt_prefix=False)
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(6)]
    budgets = [2, 7, 3, 5, 1, 4]
    got = on.extend(prompts, [""] * 6, max_new_tokens=budgets, seed=3)
    want = off.extend(prompts, [""] * 6, max_new_tokens=budgets, seed=3)
    assert [s.token_ids for s in got] == [s.token_ids for s in want]
    for g, w in zip(got, want, strict=True):
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=1e-5)
    ids = [on.encode_prompt(p) for p in prompts]
    common = next(j for j in range(min(map(len, ids))) if len({row[j] for row in ids}) > 1)
    assert common >= 16
    # the system turn is encoded once in the whole call, not once per refill
    assert on.compute.cached_tokens == 5 * common
    assert on.compute.forward_tokens == off.compute.forward_tokens - 5 * common
    assert on._call_prefix is None  # nothing of a call's KV outlives it


def test_left_padding_matches_unbatched(sampler: HFSampler) -> None:
    batched = sampler.sample(PROMPTS, max_new_tokens=8, temperature=0)
    for i, p in enumerate(PROMPTS):
        alone = sampler.sample([p], max_new_tokens=8, temperature=0)
        assert alone[0][0].token_ids == batched[i][0].token_ids
        assert alone[0][0].token_logprobs == pytest.approx(batched[i][0].token_logprobs, abs=1e-4)
    # seeded sampling: a row's random stream is keyed by (prompt index, sample index), not by the batch
    first_batched = sampler.sample(PROMPTS, n=2, max_new_tokens=8, seed=3)[0]
    first_alone = sampler.sample(PROMPTS[:1], n=2, max_new_tokens=8, seed=3)[0]
    assert [s.token_ids for s in first_batched] == [s.token_ids for s in first_alone]


def test_stop_strings_cut_at_first_occurrence(sampler: HFSampler) -> None:
    full = sampler.sample([PROMPTS[0]], max_new_tokens=12, seed=5)[0][0]
    assert full.finish_reason == "length"
    text = full.text
    stop = sampler.decode(full.token_ids[5:7])[-4:]
    assert stop.strip(), "need a visible stop string"
    cut = sampler.sample([PROMPTS[0]], max_new_tokens=12, seed=5, stop=["@@never@@", stop])[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == text[:text.find(stop)]
    assert len(cut.token_ids) < len(full.token_ids)
    assert full.token_ids[:len(cut.token_ids)] == cut.token_ids


def test_greedy_equals_top_k_1_and_tiny_top_p(sampler: HFSampler) -> None:
    greedy = sampler.sample(PROMPTS, max_new_tokens=6, temperature=0)
    k1 = sampler.sample(PROMPTS, max_new_tokens=6, temperature=1.0, top_k=1, seed=0)
    p0 = sampler.sample(PROMPTS, max_new_tokens=6, temperature=1.0, top_p=1e-6, seed=0)
    for g, a, b in zip(greedy, k1, p0, strict=True):
        assert g[0].token_ids == a[0].token_ids == b[0].token_ids
        assert a[0].logprob == pytest.approx(0.0, abs=1e-6)  # all mass on one token after truncation


def test_extend_continues_token_prefix_exactly(sampler: HFSampler) -> None:
    full = sampler.sample([PROMPTS[2]], max_new_tokens=10, temperature=0)[0][0]
    before = sampler.compute.copy()
    rest = sampler.extend([PROMPTS[2]], [full.token_ids[:4]], max_new_tokens=6, temperature=0)[0]
    assert rest.token_ids == full.token_ids[4:]
    assert full.text.endswith(rest.text) and rest.text
    plen = len(sampler.encode_prompt(PROMPTS[2]))
    assert sampler.compute.minus(before).forward_tokens == plen + 4 + 6 - 1


def test_score_logprobs_matches_generation_logprobs(sampler: HFSampler) -> None:
    s = sampler.sample([PROMPTS[1]], max_new_tokens=8, seed=2)[0][0]
    before = sampler.compute.copy()
    scored = sampler.score_logprobs([PROMPTS[1], PROMPTS[0]], [s.token_ids, ""])
    assert scored[1] == []
    assert scored[0] == pytest.approx(s.token_logprobs, abs=1e-4)
    assert sampler.compute.minus(before).forward_tokens == len(sampler.encode_prompt(PROMPTS[1])) + 8


def test_next_token_topk_is_sorted_and_consistent(sampler: HFSampler) -> None:
    top = sampler.next_token_topk([PROMPTS[0]], [""], k=5)[0]
    assert len(top) == 5 and all(a.logprob >= b.logprob for a, b in zip(top, top[1:], strict=False))
    greedy = sampler.sample([PROMPTS[0]], max_new_tokens=1, temperature=0)[0][0]
    assert greedy.token_ids[0] == top[0].token_id
    assert greedy.token_logprobs[0] == pytest.approx(top[0].logprob, abs=1e-5)


def test_raw_prompts_skip_the_chat_template() -> None:
    model, tok = load_model("tiny-random")
    raw = HFSampler(model, tok, raw=True)
    chat = HFSampler(model, tok)
    assert raw.encode_prompt("# Query:") == tok("# Query:")["input_ids"]
    assert len(chat.encode_prompt("# Query:")) > len(raw.encode_prompt("# Query:"))
    msgs = [{"role": "user", "content": "# Query:"}]
    assert raw.encode_prompt(msgs) == chat.encode_prompt(msgs)


def test_bad_inputs_raise_alignkit_errors(sampler: HFSampler) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        sampler.sample(["x"], temperature=-1)
    with pytest.raises(ConfigError, match="prefixes"):
        sampler.extend(["x", "y"], ["a"])
    with pytest.raises(DataError, match="prompt 1"):
        sampler.sample(["ok", [{"content": "no role"}]])  # type: ignore[list-item]


def test_global_seed_used_when_no_seed() -> None:
    model, tok = load_model("tiny-random")
    s = HFSampler(model, tok)
    torch.manual_seed(0)
    a = s.sample(["Hi"], max_new_tokens=4)
    torch.manual_seed(0)
    b = s.sample(["Hi"], max_new_tokens=4)
    assert a[0][0].token_ids == b[0][0].token_ids


def test_score_logprobs_text_is_batch_independent(sampler: HFSampler) -> None:
    texts = [" The sea is blue.", " Four", " ok"]
    batched = sampler.score_logprobs(PROMPTS, texts)
    for p, t, b in zip(PROMPTS, texts, batched, strict=True):
        assert len(b) == len(sampler.tokenize(t))
        assert sampler.score_logprobs([p], [t])[0] == pytest.approx(b, abs=1e-4)


def test_sampled_frequencies_follow_the_truncated_distribution(sampler: HFSampler) -> None:
    top = sampler.next_token_topk(["Hi"], [""], k=2)[0]
    p = [t.logprob for t in top]
    want = torch.softmax(torch.tensor(p), dim=0)[0].item()  # top-2 renormalised, temperature 1
    out = sampler.sample(["Hi"], n=400, max_new_tokens=1, top_k=2, seed=11)[0]
    assert {s.token_ids[0] for s in out} <= {top[0].token_id, top[1].token_id}
    freq = sum(s.token_ids[0] == top[0].token_id for s in out) / len(out)
    assert freq == pytest.approx(want, abs=4 * (want * (1 - want) / len(out)) ** 0.5 + 1e-3)


def test_prompt_prefix_sharing_changes_no_result_only_the_compute() -> None:
    model, tok = load_model("tiny-random")
    on, off = HFSampler(model, tok), HFSampler(model, tok, share_prompt_prefix=False)
    got, want = on.sample(PROMPTS, n=2, max_new_tokens=6, seed=5), off.sample(PROMPTS, n=2, max_new_tokens=6, seed=5)
    for g_row, w_row in zip(got, want, strict=True):
        assert [s.token_ids for s in g_row] == [s.token_ids for s in w_row]
        for g, w in zip(g_row, w_row, strict=True):
            assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=1e-5)
    comps = ["a b c", "the sea", "4"]
    for g, w in zip(on.score_logprobs(PROMPTS, comps), off.score_logprobs(PROMPTS, comps), strict=True):
        assert g == pytest.approx(w, abs=1e-5)
    top_on, top_off = on.next_token_topk(PROMPTS, ["", "x", ""], 3), off.next_token_topk(PROMPTS, ["", "x", ""], 3)
    assert [[t.token_id for t in row] for row in top_on] == [[t.token_id for t in row] for row in top_off]
    assert off.compute.cached_tokens == 0
    # same contexts: what one sampler processed, the other processed or reused
    assert on.compute.forward_tokens + on.compute.cached_tokens == off.compute.forward_tokens
    assert on.compute.forward_tokens < off.compute.forward_tokens


def test_a_short_common_prefix_is_not_shared() -> None:
    model, tok = load_model("tiny-random")
    raw = HFSampler(model, tok, raw=True)  # no chat template: these prompts share one word, under 16 tokens
    raw.sample(["the sea is", "the sky is"], max_new_tokens=2, seed=0)
    assert raw.compute.cached_tokens == 0


def test_a_sliding_window_model_samples_unshared_and_counts_the_one_probe_of_sharing() -> None:
    from transformers import MistralConfig, MistralForCausalLM

    _, tok = load_model("tiny-random")
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, sliding_window=4, max_position_embeddings=256)
    model = MistralForCausalLM(cfg).eval()
    on, off = HFSampler(model, tok), HFSampler(model, tok, share_prompt_prefix=False)
    for call in range(2):
        got, want = (s.sample(PROMPTS, n=2, max_new_tokens=5, seed=call) for s in (on, off))
        assert [x.token_ids for r in got for x in r] == [x.token_ids for r in want for x in r]
    # the first call encoded the common prefix once, found the sliding-window cache cannot share it, and went on
    # unshared; that forward is counted (once, on the first prompt's first sample), the user's flag is kept
    ids = [on.encode_prompt(p) for p in PROMPTS]
    common = next(j for j in range(min(map(len, ids))) if len({row[j] for row in ids}) > 1)
    assert on.compute.forward_tokens == off.compute.forward_tokens + common
    assert on.share_prompt_prefix is True and on.compute.cached_tokens == 0
