"""What the teacher slot and the judged step hand to DCKD/ADPA and CUT, checked against direct computations."""

from __future__ import annotations

import math

import torch

from alignkit.data.io import read_records, sample_path
from alignkit.data.records import JudgedExample
from alignkit.models import load_model
from alignkit.objectives import get_objective
from alignkit.train.batching import collate, tokenize_records
from alignkit.train.judged import JudgedStep, judged_labels, judged_prompt, tokenize_judged
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.reference import Reference
from alignkit.train.teacher import LOG_FLOOR, TeacherStep, compute_teacher_table, load_or_compute_teacher

TEMPLATE = "{prompt}\n\nJudgment: {judgment}"


def full_logps(model, batch):
    """log π at every position predicting a completion token, `[N, T-1, V]` (tests only)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    return logits.log_softmax(-1)


def test_teacher_tables_are_cached_and_a_corrupt_cache_is_recomputed(tmp_path, monkeypatch):
    import alignkit.train.teacher as teacher_mod

    monkeypatch.setattr(teacher_mod, "cache_dir", lambda: tmp_path)
    teacher, tok = load_model("tiny-random", seed=1)
    ref_teacher, _ = load_model("tiny-random", seed=2)
    data = tokenize_records(list(read_records(sample_path("pairwise"), "pairwise").records)[:3], "pairwise", tok)
    logs: list[str] = []

    def table():
        return load_or_compute_teacher(teacher, ref_teacher, data, "k1", int(tok.pad_token_id), 2, 2, "cpu",
                                       main=True, log=logs.append)

    first = table()
    assert any("cached at" in m for m in logs) and (tmp_path / "teacher" / "k1.safetensors").exists()
    logs.clear()
    again = table()
    assert any("reusing cache" in m for m in logs)
    for a, b in ((first.ids, again.ids), (first.teacher, again.teacher), (first.reference, again.reference),
                 (first.counts, again.counts)):
        assert torch.equal(a, b)
    (tmp_path / "teacher" / "k1.safetensors").write_bytes(b"not a safetensors file")
    logs.clear()
    assert torch.equal(table().teacher, first.teacher)
    assert any("unreadable" in m for m in logs) and any("cached at" in m for m in logs)


def test_teacher_slot_gathers_exact_topk_for_dckd_and_adpa():
    torch.set_num_threads(1)
    student, tok = load_model("tiny-random", seed=0)
    teacher, _ = load_model("tiny-random:1:32", seed=1)
    ref_teacher, _ = load_model("tiny-random", seed=2)
    data = tokenize_records(list(read_records(sample_path("pairwise"), "pairwise").records)[:4], "pairwise", tok)
    pad = int(tok.pad_token_id)
    k = 3
    table = compute_teacher_table(teacher, ref_teacher, data, pad, k, batch_size=2, device="cpu", show=False)
    step = TeacherStep(get_objective("adpa"), {}, Reference("none"), "cpu", tables={"train": table})
    batch = collate(data, [2, 0], pad)  # out of order on purpose
    lp = step.logprobs(CompletionLogProbs(student), batch)
    ids, t, r, s = (lp.extras[n] for n in ("teacher_topk_ids", "teacher_topk_logp", "ref_teacher_topk_logp",
                                             "policy_topk_logp"))
    assert ids.shape == (2, 2, batch.input_ids.shape[1] - 1, 2 * k) and t.shape == r.shape == s.shape == ids.shape
    mask = lp.token_mask
    with torch.no_grad():
        want_t, want_r = full_logps(teacher, batch), full_logps(ref_teacher, batch)
    want_s = full_logps(student, batch)
    for b in range(2):
        for c in range(2):
            n = b * 2 + c  # pairwise rows are (b, chosen), (b, rejected) in order
            for pos in mask[b, c].nonzero().flatten().tolist():
                top_t = want_t[n, pos].topk(k).indices
                top_r = want_r[n, pos].topk(k).indices
                assert ids[b, c, pos, :k].tolist() == top_t.tolist()
                assert ids[b, c, pos, k:].tolist() == top_r.tolist()
                dup = torch.isin(top_r, top_t)
                exp_t = torch.cat([want_t[n, pos, top_t], torch.where(dup, LOG_FLOOR, want_t[n, pos, top_r])])
                exp_r = torch.cat([want_r[n, pos, top_t], torch.where(dup, LOG_FLOOR, want_r[n, pos, top_r])])
                torch.testing.assert_close(t[b, c, pos], exp_t, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(r[b, c, pos], exp_r, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(s[b, c, pos], want_s[n, pos, ids[b, c, pos]], atol=1e-5, rtol=1e-5)
    loss, metrics = get_objective("adpa")(lp)
    loss.backward()  # the student's gathered log-probs are differentiable
    assert math.isfinite(float(loss.detach())) and student.lm_head.weight.grad is not None


def test_judged_prompt_fills_the_template_once():
    assert judged_prompt("Q {judgment}", "bad", TEMPLATE) == "Q {judgment}\n\nJudgment: bad"
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    assert judged_prompt(chat, "rude", TEMPLATE)[1]["content"] == "hi\n\nJudgment: rude"
    assert chat[1]["content"] == "hi"


def test_cut_sees_the_same_response_tokens_in_both_contexts():
    torch.set_num_threads(1)
    model, tok = load_model("tiny-random", seed=0)
    recs = [JudgedExample("Name a colour.", "Green, a secondary colour.", "Wrong kind of colour.", 2.0),
            JudgedExample("2 + 2?", "4.", "Correct.", 9.0),
            JudgedExample("A longer prompt about the weather today", "Sunny.", "Too short.", 3.0)]
    data = tokenize_judged(recs, tok, judgment_template=TEMPLATE, positive_score=7.0)
    assert [len(e.seqs) for e in data.examples] == [2, 1, 2]  # positives have no judgment row
    pad = int(tok.pad_token_id)
    step = JudgedStep(get_objective("cut"), {}, Reference("none"), "cpu", labels={"train": judged_labels(data)})
    batch = collate(data, [0, 1, 2], pad)
    lp = step.logprobs(CompletionLogProbs(model), batch)
    assert lp.labels.flatten().tolist() == [False, True, False]
    plain, judged, mask = lp.extras["token_policy_plain"], lp.token_policy, lp.token_mask
    assert plain.shape == judged.shape == mask.shape and plain.shape[:2] == (3, 1)
    with torch.no_grad():
        full = full_logps(model, batch)
    for b, ex in enumerate(data.examples):
        n_resp = len(ex.seqs[0].completion_ids)
        assert int(mask[b, 0].sum()) == n_resp
        for col, values in ((0, plain), (1, judged)):
            if col >= len(ex.seqs):
                continue
            n = int((batch.rows == b * batch.K + col).nonzero())
            s = ex.seqs[col]
            targets = torch.tensor(s.completion_ids)
            start = len(s.prompt_ids) - 1
            want = full[n, start:start + n_resp].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(values[b, 0, :n_resp].detach(), want, atol=1e-5, rtol=1e-5)
    loss, metrics = get_objective("cut")(lp)
    assert metrics["count/negative"] == 2.0 and math.isfinite(float(loss))
