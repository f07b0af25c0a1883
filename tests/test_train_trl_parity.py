"""Model-level parity with TRL 1.16: same tiny model, same token ids → same per-sequence log-probs and loss.

TRL renders a conversational completion through the chat template (content + `<|im_end|>` + "\\n") while alignkit
tokenises the completion alone and appends EOS (spec §0), so both sides are fed the SAME token ids (alignkit's);
what is compared is the log-prob kernel, the [chosen; rejected] layout and the DPO/SFT loss arithmetic.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from alignkit.models import load_model
from alignkit.objectives.base import get_objective
from alignkit.train.batching import collate, tokenize_records
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.reference import Reference
from alignkit.train.step import ObjectiveStep
from alignkit.train.synthetic import synthetic_pairs, synthetic_sft

pytest.importorskip("trl")


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("trl").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _dataset(n: int):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}] * n)


def test_dpo_logps_and_loss_equal_trl(tmp_path):
    from trl import DPOConfig, DPOTrainer

    policy, tok = load_model("tiny-random", seed=5)
    ref, _ = load_model("tiny-random", seed=6)  # a different reference, so the DPO loss is not just log 2
    recs = synthetic_pairs(4, seed=2)
    recs[1] = type(recs[1])("Say hi", recs[1].chosen, recs[1].rejected)  # a plain-string prompt too
    data = tokenize_records(recs, "pairwise", tok)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=4, beta=0.1,
                     max_length=None, use_cpu=True, bf16=False)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=_dataset(4),
                         processing_class=tok)
    rows = [{"prompt_ids": e.seqs[0].prompt_ids, "chosen_ids": e.seqs[0].completion_ids,
             "rejected_ids": e.seqs[1].completion_ids} for e in data.examples]
    tb = trainer.data_collator(rows)
    trl_loss = trainer.compute_loss(trainer.model, tb)
    labels = tb["input_ids"].masked_fill(tb["completion_mask"] == 0, -100)
    with torch.no_grad():
        trl_pol = trainer.model(input_ids=tb["input_ids"], attention_mask=tb["attention_mask"], labels=labels,
                                fused_lm_head=True, use_cache=False).log_probs.sum(1)
        trl_ref = trainer.ref_model(input_ids=tb["input_ids"], attention_mask=tb["attention_mask"],
                                    labels=labels, fused_lm_head=True, use_cache=False).log_probs.sum(1)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()

    # the shipped objective with its defaults (β = 0.1, the DPOConfig default too)
    step = ObjectiveStep(get_objective("dpo"), {},
                         Reference("separate", model=CompletionLogProbs(trainer.ref_model)), "cpu")
    batch = collate(data, [0, 1, 2, 3], tok.pad_token_id)
    wrapped = CompletionLogProbs(trainer.model)
    lp = step.logprobs(wrapped, batch)
    # TRL's layout is [all chosen; all rejected]; alignkit's is [B, K] with K = (chosen, rejected).
    torch.testing.assert_close(lp.policy.detach().T.reshape(-1), trl_pol, rtol=1e-5, atol=1e-5)
    assert lp.reference is not None
    torch.testing.assert_close(lp.reference.T.reshape(-1), trl_ref, rtol=1e-5, atol=1e-5)
    loss, _, n_tokens = step(wrapped, batch)
    assert abs(float(loss) - float(trl_loss)) < 1e-5
    assert 0.01 < float(loss) and abs(float(loss) - 0.6931) > 1e-3  # a non-trivial value
    assert n_tokens == int(tb["attention_mask"].sum())  # the same token count TRL reports
    loss.backward()
    for n, p in trainer.model.named_parameters():
        if n in trl_grads:
            torch.testing.assert_close(p.grad, trl_grads[n], rtol=1e-4, atol=1e-6)


def test_sft_loss_equals_trl_sfttrainer(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model("tiny-random", seed=7)
    data = tokenize_records(synthetic_sft(4, seed=3), "sft", tok)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=4, use_cpu=True, bf16=False,
                     max_length=None)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=Dataset.from_list([{"text": "hello"}] * 4))
    rows = [{"input_ids": e.seqs[0].input_ids, "labels": e.seqs[0].labels} for e in data.examples]
    tb = trainer.data_collator(rows)
    trl_loss = trainer.compute_loss(trainer.model, tb)

    batch = collate(data, [0, 1, 2, 3], tok.pad_token_id)
    step = ObjectiveStep(get_objective("sft"), {}, Reference("none"), "cpu")
    loss, _, _ = step(CompletionLogProbs(trainer.model), batch)
    assert abs(float(loss) - float(trl_loss)) < 1e-5
    # the completions differ in length, so the per-example mean (the option) does not match TRL; a random model's
    # token log-probs are nearly uniform, so the gap is small, but ~10× the tolerance above
    assert len({len(e.seqs[0].completion_ids) for e in data.examples}) > 1
    per_example = ObjectiveStep(get_objective("sft"), {"per_sequence": True}, Reference("none"), "cpu")
    assert abs(float(per_example(CompletionLogProbs(trainer.model), batch)[0]) - float(trl_loss)) > 5e-5
