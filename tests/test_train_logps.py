"""The completion log-prob kernel equals the naive full-vocabulary computation (spec/objectives.md §0)."""

from __future__ import annotations

import pytest
import torch

from alignkit.data.records import PairwiseExample
from alignkit.models import LoraConfig, load_model
from alignkit.train.batching import collate, tokenize_records
from alignkit.train.logps import CompletionLogProbs, completion_logps, naive_completion_logps

RECORDS = [
    PairwiseExample("What is 2+2?", "4", "It is five, I think."),
    PairwiseExample([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
                    "Blue.", "A colour that is commonly seen in the sky during a clear day is blue."),
    PairwiseExample("Say hi", "Hello there! How can I help you today?", "hi"),
]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", seed=3)


def test_kernel_matches_naive_log_softmax_gather_with_padding(tiny):
    model, tok = tiny
    data = tokenize_records(RECORDS, "pairwise", tok, max_length=256)
    batch = collate(data, [0, 1, 2], tok.pad_token_id)
    assert batch.input_ids.shape[0] == 6  # chosen and rejected of 3 examples in ONE forward
    assert (batch.attention_mask == 0).any()  # right padding to the batch maximum
    with torch.no_grad():
        fast = completion_logps(model, batch.input_ids, batch.attention_mask, batch.labels)
        slow = naive_completion_logps(model, batch.input_ids, batch.attention_mask, batch.labels)
    torch.testing.assert_close(fast.sums, slow, atol=1e-5, rtol=1e-6)
    expected_counts = (batch.labels[:, 1:] != -100).sum(1).float()
    torch.testing.assert_close(fast.counts, expected_counts)
    # Each completion is scored with its EOS: counts = completion tokens + 1.
    eos = tok.eos_token_id
    assert all(seq.completion_ids[-1] == eos for ex in data.examples for seq in ex.seqs)


def test_token_level_values_sum_to_sequence_values(tiny):
    model, tok = tiny
    data = tokenize_records(RECORDS, "pairwise", tok)
    batch = collate(data, [0, 1, 2], tok.pad_token_id)
    with torch.no_grad():
        r = completion_logps(model, batch.input_ids, batch.attention_mask, batch.labels, token_level=True)
    assert r.tokens is not None and r.mask is not None
    torch.testing.assert_close(r.tokens.sum(1), r.sums)
    assert bool((r.tokens[~r.mask] == 0).all())
    slots = batch.to_slots(r.sums)
    assert slots.shape == (3, 2)


def test_gradients_match_naive_and_lora_wrapped_model():
    model, tok = load_model("tiny-random", seed=4, lora=LoraConfig(r=4, alpha=8))
    data = tokenize_records(RECORDS, "pairwise", tok)
    batch = collate(data, [0, 1], tok.pad_token_id)
    wrapped = CompletionLogProbs(model)
    sums, counts = wrapped(batch.input_ids, batch.attention_mask, batch.labels)
    sums.sum().backward()
    g_fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    naive_completion_logps(model, batch.input_ids, batch.attention_mask, batch.labels).sum().backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(g_fast[n], p.grad, atol=1e-5, rtol=1e-4)


def test_listwise_padding_items_are_not_run(tiny):
    from alignkit.data.records import ListwiseExample

    _, tok = tiny
    recs = [ListwiseExample("q1", ["a", "b", "c"], [3.0, 2.0, 1.0]), ListwiseExample("q2", ["x"], [1.0])]
    data = tokenize_records(recs, "listwise", tok)
    batch = collate(data, [0, 1], tok.pad_token_id)
    assert batch.K == 3 and batch.input_ids.shape[0] == 4
    assert batch.item_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.scores is not None and batch.scores[0].tolist() == [3.0, 2.0, 1.0]


def test_unpaired_kl_pairs_use_previous_completion(tiny):
    from alignkit.data.records import UnpairedExample

    _, tok = tiny
    recs = [UnpairedExample("p0", "c0", True), UnpairedExample("p1", "c1", False), UnpairedExample("p2", "c2", True)]
    data = tokenize_records(recs, "unpaired", tok)
    batch = collate(data, [0, 1, 2], tok.pad_token_id, with_kl=True)
    assert batch.kl is not None
    ids, att, lab = batch.kl
    for b in range(3):
        prev = data.examples[(b - 1) % 3]
        n = int(att[b].sum())
        completion = [t for t in lab[b, :n].tolist() if t != -100]
        assert completion == prev.completion_ids[0]
        assert ids[b, : len(data.examples[b].prompt_ids)].tolist() == data.examples[b].prompt_ids
    assert batch.unpaired_labels is not None and batch.unpaired_labels.view(-1).tolist() == [True, False, True]
