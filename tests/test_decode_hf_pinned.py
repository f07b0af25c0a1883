"""HFSampler's seeded outputs are pinned: the lead and the data builders rely on a seed giving the same samples
across versions, so the prefix cache and continuous batching must not change them (numbers recorded with the
sampler as of ab510a2, tiny random Llama, CPU)."""

from __future__ import annotations

import pytest

from alignkit.decode.hf import HFSampler
from alignkit.models import load_model

PROMPTS = ["Hi", "Write a short poem about the sea, please.", "What is 2 + 2?", "Name three colours."]
SAMPLE_SEED_7 = [
    [[48050, 10644, 36473, 33228, 43610, 29224], [45191, 17488, 18819, 35954, 20326, 40915]],
    [[19541, 7459, 37139, 36395, 41940, 18023], [48423, 12864, 38782, 47177, 38880, 12273]],
    [[3822, 44771, 19725, 24169, 10096, 47852], [40434, 33199, 36458, 37177, 48087, 46190]],
    [[2171, 12621, 13471, 3211, 9063, 31047], [923, 42523, 32208, 13136, 41690, 23867]],
]
EXTEND_SEED_11 = [[5730, 17736, 42017], [20754, 43238, 7031, 19984, 43232], [30755, 6000],
                  [21743, 19163, 30016, 26752]]
TRUNCATED_SEED_3 = [[4516, 48500, 8052, 502, 8052], [23619, 31120, 27522, 7753, 42612],
                    [11429, 18185, 4503, 15216, 25281], [28674, 2636, 29039, 7689, 21292]]


@pytest.fixture(scope="module")
def model_tok():  # noqa: ANN201
    return load_model("tiny-random")


@pytest.mark.parametrize("kwargs", [{}, {"max_batch_rows": 3}, {"prefix_cache_mb": 64},
                                    {"prefix_cache_mb": 64, "max_batch_rows": 3}])
def test_seeded_outputs_match_the_pinned_ones(model_tok, kwargs) -> None:  # noqa: ANN001
    s = HFSampler(*model_tok, **kwargs)
    for _ in range(2):  # the second round hits the prefix cache when it is on
        out = s.sample(PROMPTS, n=2, max_new_tokens=6, seed=7)
        assert [[x.token_ids for x in row] for row in out] == SAMPLE_SEED_7
        assert out[1][0].logprob == pytest.approx(-64.1692, abs=1e-3)
        assert out[1][0].token_logprobs[:3] == pytest.approx([-10.8934, -10.6372, -10.7223], abs=1e-3)
        ext = s.extend(PROMPTS, [[100, 200], [], [5], [7, 8, 9]], max_new_tokens=[3, 5, 2, 4], seed=11)
        assert [x.token_ids for x in ext] == EXTEND_SEED_11
        trunc = s.sample(PROMPTS, max_new_tokens=5, temperature=0.7, top_p=0.9, top_k=50, seed=3)
        assert [row[0].token_ids for row in trunc] == TRUNCATED_SEED_3


def test_continuous_batching_refills_the_batch_without_changing_samples(model_tok) -> None:  # noqa: ANN001
    model, tok = model_tok
    prompts = [f"Prompt number {i}" for i in range(8)]
    budgets = [6, 1, 6, 1, 6, 1, 6, 1]  # long and short rows interleaved
    shapes: list[tuple[int, ...]] = []
    forward = model.forward

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = counting
    try:
        small = HFSampler(model, tok, max_batch_rows=2).extend(prompts, [[]] * 8, max_new_tokens=budgets, seed=5)
    finally:
        del model.forward
    whole = HFSampler(model, tok).extend(prompts, [[]] * 8, max_new_tokens=budgets, seed=5)
    assert [s.token_ids for s in small] == [s.token_ids for s in whole]
    assert [len(s.token_ids) for s in small] == budgets
    # chunks of 2 rows would take 4 x 5 = 20 one-token steps; short rows leave early and waiting prompts join
    decode_steps = [s for s in shapes if s[1] == 1]
    assert len(decode_steps) <= 12
    assert max(s[0] for s in shapes) <= 2


def test_a_call_longer_than_one_forward_batch_shows_its_rows_progress(model_tok, capsys) -> None:  # noqa: ANN001
    model, tok = model_tok
    HFSampler(model, tok, max_batch_rows=2, progress=True).sample(PROMPTS, max_new_tokens=3, seed=1)
    assert "sampling:" in capsys.readouterr().err  # tqdm on stderr, over the call's 4 rows
    HFSampler(model, tok, max_batch_rows=8, progress=True).sample(PROMPTS, max_new_tokens=3, seed=1)
    assert "sampling" not in capsys.readouterr().err  # one forward batch: the caller's own bar says enough
