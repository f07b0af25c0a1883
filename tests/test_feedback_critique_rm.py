"""MM-RLHF critique reward model: spec wave2_feedback_safety.md §4.5 worked numbers, the reward index under
padding, gold-critique inference = training forward, and `alignkit reward train --objective critique` on
tiny-random, then the result used as a Reward through `rm:DIR`."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.rewards.critique import CritiqueRM, RewardHead, critique_rm_loss, encode_rm, pad_right
from alignkit.rewards.losses import bt_loss
from alignkit.rewards.registry import load_reward


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_worked_loss() -> None:
    loss, m = critique_rm_loss(t([1.2]), t([-0.3]), t([1.10]), t([1.40]), t([0.0]))
    assert float(loss) == pytest.approx(2.709513, abs=1e-6)
    assert m["bt_loss"] == pytest.approx(0.201413, abs=1e-6) and m["center_loss"] == pytest.approx(0.81)  # × c_ctr 0.01 = 0.0081
    loss, _ = critique_rm_loss(t([1.2]), t([-0.3]), t([1.10]), t([1.40]), t([1.0]))
    assert float(loss) == pytest.approx(0.209513, abs=1e-6)


def test_no_critique_weight_is_bt_with_centering() -> None:
    r_c, r_r = t([1.0, -0.5, 0.3]), t([0.2, 0.4, -1.0])
    ours, _ = critique_rm_loss(r_c, r_r, t([9.0] * 3), t([9.0] * 3), t([0.0] * 3), critique_weight=0.0,
                               center_coef=0.01)
    assert float(ours) == pytest.approx(float(bt_loss(r_c, r_r, None, 0.01)), abs=1e-6)  # bt_loss is fp32


def test_ties_and_margin() -> None:
    loss, _ = critique_rm_loss(t([1.0, 0.5]), t([0.0, 0.2]), t([0.0, 0.0]), t([0.0, 0.0]), t([1.0, 1.0]),
                               margin=t([0.5, 0.0]), is_tie=torch.tensor([False, True]), center_coef=0.0)
    import math
    assert float(loss) == pytest.approx(math.log1p(math.exp(-0.5)) + 0.3**2, abs=1e-9)


@pytest.fixture(scope="module")
def tiny():
    from alignkit.models import load_model

    lm, tok = load_model("tiny-random:1:32")
    torch.manual_seed(0)
    return CritiqueRM(lm, RewardHead(lm.config.hidden_size, dropout=0.0)).eval(), tok


def test_reward_index_is_last_token_with_right_padding(tiny) -> None:
    module, tok = tiny
    short = encode_rm(tok, "Q?", "Yes.", "Fine.")
    long = encode_rm(tok, "A much longer question here?", "A much longer answer here.", "Longer critique text.")
    pad = int(tok.pad_token_id)
    with torch.no_grad():
        r_alone, nll_alone = module(*pad_right([short], pad))
        r_batch, nll_batch = module(*pad_right([short, long], pad))
    assert float(r_batch[0]) == pytest.approx(float(r_alone[0]), abs=1e-5)
    assert float(nll_batch[0]) == pytest.approx(float(nll_alone[0]), abs=1e-5)
    # A reward read at the padded end instead would differ: the last column of row 0 is padding.
    assert int(pad_right([short, long], pad)[1][0, -1]) == 0


def _write(path, n=8) -> None:
    rows = [{"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}.", "rejected": f"{2 * i + 1}.",
             **({"chosen_critique": "Correct.", "rejected_critique": "Wrong sum."} if i % 2 == 0 else {})}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_train_and_use_as_reward(tmp_path, capsys) -> None:
    data = tmp_path / "pairs.jsonl"
    _write(data)
    run = tmp_path / "crm"
    rc = main(["reward", "train", "--objective", "critique", "--model", "tiny-random:1:32", "--data", str(data),
               "--output-dir", str(run), "--set", "max_steps=2", "--set", "batch_size=2", "--set", "lr=1e-3",
               "--set", "progress=false", "--set", "eval_split=0.25"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "critique RM: 6 train pairs" in out and "BT-only" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and "critique_nll" in rows[0]
    assert json.loads((run / "eval.json").read_text())["pairs"] == 2
    reward = load_reward(f"rm:{run / 'final'}")
    reward.max_new_tokens = 4
    res = reward(["What is 1 + 1?", "What is 1 + 1?"], ["2.", "3."])
    assert len(res.scores) == 2 and len(res.info["critiques"]) == 2
    # Gold critiques passed in give the training-time forward value, deterministically.
    gold = reward(["What is 1 + 1?"], ["2."], critiques=["Correct."])
    again = reward.score(["What is 1 + 1?"], ["2."], ["Correct."])
    assert gold.scores == pytest.approx(again)
