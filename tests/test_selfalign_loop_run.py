"""`alignkit loop` (spec wave2_selfalign_merge.md §0 loop recipes, §1 I-SHEEP, §2 CycleAlign) on tiny-random.

I-SHEEP runs with a scripted generator/judge (canned instruction lists, answers and the spec's five score pairs)
wrapped around the real round model, so the test knows which weights each round sampled from; training is real.
CycleAlign samples and scores with the real tiny-random policy and ranks with a scripted black-box judge."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import DataError
from alignkit.pipelines import loop
from alignkit.pipelines.cyclealign_round import CycleAlignConfig
from alignkit.pipelines.isheep_round import ISheepConfig
from alignkit.pipelines.loop import LoopConfig, run_loop

SEEDS = [{"instruction": "Write a poem about the sea.", "input": "", "output": "Waves."},
         {"instruction": "Name three famous painters.", "input": "", "output": "Monet, Goya, Kahlo."}]
# (instruction, input, answer, quality reply, following reply): the spec's pairs (9,10), (8,10), (10,9), (9,9),
# (7,3), plus items the filters must drop before judging.
ITEMS = [("Explain why the sky looks blue during the day.", "", "Air scatters blue light most.", "9||ok", "10||ok"),
         ("Translate good morning into French.", "", "Bonjour.", "8||ok", "10||ok"),
         ("Give some tips for saving money on groceries.", "", "Plan meals; buy in bulk.", "10||ok", "9||ok"),
         ("Classify the animal as a mammal or a reptile.", "crocodile", "A reptile.", "9||ok", "9||fine"),
         ("Suggest a title for a mystery novel set in Venice.", "", "The Glass Canal.", "7||meh", "3||no"),
         ("Draw a picture of a cat sitting on a mat.", "", "-", "10||", "10||"),  # media word: dropped
         ("Write a short poem about the sea.", "", "-", "10||", "10||"),  # ROUGE-L 0.92 to a seed: dropped
         ("Describe a typical breakfast in rural Japan.", "", "Do you want more detail?", "10||", "10||")]  # rule


def weights_hash(model: Any) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().numpy().tobytes())
    return h.hexdigest()


def _text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class ScriptedISheep:
    """Canned synthesis lists, answers and judge replies; it loads the real model of its spec so the test can
    check which weights each round's generator had."""

    def __init__(self, spec: str, role: str, log: list[dict[str, Any]], scores: dict[str, tuple[str, str]]) -> None:
        from alignkit.models import load_model

        self.compute = Compute()
        self.spec, self.role, self.scores = spec, role, scores
        model, _ = load_model(spec)
        self.record = {"spec": spec, "role": role, "weights": weights_hash(model), "calls": 0}
        log.append(self.record)

    def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
        self.record["calls"] += 1
        return [[Sample(text=self._reply(_text(p)), token_ids=[1], logprob=0.0, finish_reason="eos")]
                for p in prompts]

    def _reply(self, text: str) -> str:
        if "List of 20 tasks" in text:
            first = int(re.search(r"(\d+)\. Instruction:$", text).group(1))
            chunks = [f" {ins}\n{first}. Input:\n{inp}" if j == 0 else f"{first + j}. Instruction: {ins}\n"
                      f"{first + j}. Input:\n{inp}" for j, (ins, inp, *_rest) in enumerate(ITEMS)]
            return "\n###\n".join(chunks) + f"\n###\n{first + len(ITEMS)}. Instruction: cut off mid"
        if "strict expert judge" in text:
            for ins, *_r in ITEMS:
                if ins in text:
                    q, f = self.scores[ins]
                    return q if "Rate the quality" in text else f
            return "1||?"
        for ins, inp, answer, *_r in ITEMS:
            if text.strip() == ins + inp:
                return answer
        return "?"


def _isheep_cfg(root: Path, **kw: Any) -> LoopConfig:
    seeds = root / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    isheep = ISheepConfig(seeds=str(seeds), n_instructions=20, request_batch_size=1, max_synthesis_batches=1,
                          **kw.pop("isheep", {}))
    kw.setdefault("rounds", 2)
    return LoopConfig(method="isheep", model="tiny-random", output_dir=str(root / "run"), lr=1e-2,
                      epochs=1.0, batch_size=1, lora_r=4, max_length_new_tokens=16, isheep=isheep, **kw)


def _factory(log: list[dict[str, Any]], scores: dict[str, tuple[str, str]] | None = None) -> Any:
    table = scores or {ins: (q, f) for ins, _i, _a, q, f in ITEMS}
    return lambda spec, role: ScriptedISheep(spec, role, log, table)


@pytest.fixture(scope="module")
def isheep_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Round 2's training is killed once, then the same command resumes and finishes."""
    root = tmp_path_factory.mktemp("isheep")
    prompts = root / "eval.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say something about {w}."}) + "\n" for w in ("rain", "tea")))
    cfg = _isheep_cfg(root, eval_prompts=str(prompts), eval_reward="length:1:40", eval_max_new_tokens=6)
    real_train = loop.train_step
    mp = pytest.MonkeyPatch()

    def killed(rcfg: Any, out: Path, *a: Any) -> Any:
        if "iter_2" in str(out):
            raise KeyboardInterrupt("killed")
        return real_train(rcfg, out, *a)

    first: list[dict[str, Any]] = []
    mp.setattr(loop, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_loop(cfg, log=lambda _m: None, sampler_factory=_factory(first))
    mp.undo()
    second: list[dict[str, Any]] = []
    logs: list[str] = []
    table = run_loop(cfg, log=logs.append, sampler_factory=_factory(second))
    return {"cfg": cfg, "root": Path(cfg.output_dir), "first": first, "second": second, "logs": logs,
            "table": table}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_isheep_trains_on_exactly_the_pairs_with_both_scores_above_the_threshold(isheep_run: Any) -> None:
    root = isheep_run["root"]
    for k in (1, 2):
        kept = _rows(root / f"iter_{k}" / "data" / "kept.jsonl")
        assert sorted(r["prompt"] for r in kept) == sorted(
            [ITEMS[0][0], ITEMS[2][0], ITEMS[3][0] + ITEMS[3][1]])  # (9,10), (10,9), (9,9): 3 of 5 judged
        assert all(r["quality_score"] > 8 and r["following_score"] > 8 and r["iteration"] == k for r in kept)
        generated = {r["instruction"]: r for r in _rows(root / f"iter_{k}" / "data" / "generated.jsonl")}
        assert ITEMS[5][0] not in generated and ITEMS[6][0] not in generated  # media word, near-duplicate seed
        assert generated[ITEMS[7][0]]["drop_reason"] == "continues_dialogue"
        assert generated[ITEMS[1][0]]["drop_reason"] == "below_threshold"
        judge = _rows(root / f"iter_{k}" / "data" / "judge.jsonl")
        assert len(judge) == 2 * 5 and {r["kind"] for r in judge} == {"quality", "following"}
    summary = json.loads((root / "iter_1" / "data" / ".done").read_text())
    assert summary["keep_rate"] == pytest.approx(0.6)


def test_isheep_round_two_samples_from_round_one_model_and_trains_from_the_base(isheep_run: Any) -> None:
    from alignkit.models import load_model

    root = isheep_run["root"]
    model1 = json.loads((root / "iter_1" / "train" / ".done").read_text())["model"]
    assert Path(model1).is_relative_to(root / "iter_1")
    generators = [r for r in isheep_run["first"] + isheep_run["second"] if r["role"] == "policy" and r["calls"]]
    by_spec = {r["spec"]: r["weights"] for r in generators}
    base_w = weights_hash(load_model("tiny-random")[0])
    round1_w = weights_hash(load_model(model1)[0])
    assert base_w != round1_w
    # round 1's data came from M_0, round 2's from M_1 (the weights the sampler actually held)
    assert _rows(root / "iter_1" / "data" / "generated.jsonl")[0]["source_model"] == "tiny-random"
    assert {r["source_model"] for r in _rows(root / "iter_2" / "data" / "generated.jsonl")} == {model1}
    assert by_spec[model1] == round1_w
    # train_from=base: both rounds' trainers start from M_0, not from the previous round's model
    for k in (1, 2):
        assert "model: tiny-random\n" in (root / f"iter_{k}" / "train" / "config.yaml").read_text()
    # judge=current: round 2's self-assessment is by M_1
    assert {r["judge_model"] for r in _rows(root / "iter_2" / "data" / "judge.jsonl")} == {model1}


def test_isheep_resumes_after_a_killed_round(isheep_run: Any) -> None:
    logs, root = isheep_run["logs"], isheep_run["root"]
    skipped = {line.split("]")[0][1:] for line in logs if "already done" in line}
    assert {"iter_0/eval", "iter_1/data", "iter_1/train", "iter_1/eval", "iter_2/data"} <= skipped
    assert any(line.startswith("[iter_2/train] starting") for line in logs)
    # the resumed run did not sample round 2's data again (no generator calls on M_1 before its training)
    assert sum(r["calls"] for r in isheep_run["second"]) == 0  # every data stage was already done
    assert (root / "iter_2" / "train" / "merged" / "config.json").exists()
    again: list[str] = []
    run_loop(isheep_run["cfg"], log=again.append, sampler_factory=_factory([]))
    assert all("already done" in line for line in again if line.startswith("["))


def test_isheep_round_table_has_the_reward_paired_against_the_base(isheep_run: Any) -> None:
    table, root = isheep_run["table"], isheep_run["root"]
    assert [r["round"] for r in table] == [0, 1, 2]
    assert table[0]["model"] == "tiny-random" and "paired_vs_base" not in table[0]
    for row in table[1:]:
        assert row["kept"] == 3 and row["keep_rate"] == pytest.approx(0.6)
        assert {"value", "low", "high"} <= set(row["reward"]) and {"value", "low", "high"} <= set(
            row["paired_vs_base"])
    assert _rows(root / "rounds.jsonl") == table
    assert _rows(root / "iter_2" / "metrics.jsonl") == [table[2]]
    text = loop.format_table(table)
    assert text.splitlines()[0].split()[:3] == ["round", "kept", "keep_rate"] and len(text.splitlines()) == 4


def test_isheep_stops_with_a_clear_message_when_every_pair_is_filtered(tmp_path: Path) -> None:
    cfg = _isheep_cfg(tmp_path, rounds=1)
    low = {ins: ("5||bad", "5||bad") for ins, *_r in ITEMS}
    with pytest.raises(DataError, match="round 1: no training records survived"):
        run_loop(cfg, log=lambda _m: None, sampler_factory=_factory([], low))
    assert not (tmp_path / "run" / "iter_1" / "train").exists()


def test_isheep_judge_base_uses_m0_for_self_assessment(tmp_path: Path) -> None:
    from alignkit.pipelines.isheep_round import build_round, read_seeds

    cfg = _isheep_cfg(tmp_path, isheep={"judge": "base"})
    log: list[dict[str, Any]] = []
    gen = _factory(log)("tiny-random", "policy")
    summary = build_round(tmp_path, gen, gen, read_seeds(cfg.isheep.seeds), cfg.isheep, iteration=2,
                          source_model="m1", judge_model="tiny-random", seed=0)
    assert summary["judge_model"] == "tiny-random" and summary["kept"] == 3
    # round >= 2 speaks to the model through its chat template with the system message (prompt_format auto)
    assert summary["instructions"] == 6


class LogprobJudge(ScriptedISheep):
    """The scripted judge's canned score s, given as log p(reply = s) = 0 and −20 for every other number."""

    def score_logprobs(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[list[float]]:
        def want(text: str) -> str:
            return self._reply(text).split("||")[0]
        return [[0.0 if c == want(_text(p)) else -20.0] for p, c in zip(prompts, completions, strict=True)]


def test_isheep_logprob_scores_are_the_judges_expected_score(tmp_path: Path) -> None:
    from alignkit.pipelines.isheep_round import build_round, expected_scores, read_seeds

    cfg = _isheep_cfg(tmp_path, isheep={"score_mode": "logprob"})
    judge = LogprobJudge("tiny-random", "judge", [], {ins: (q, f) for ins, _i, _a, q, f in ITEMS})
    summary = build_round(tmp_path, judge, judge, read_seeds(cfg.isheep.seeds), cfg.isheep, iteration=1,
                          source_model="m0", judge_model="tiny-random", seed=0)
    assert summary["kept"] == 3  # the same three pairs as the parsed replies: (9,10), (10,9), (9,9)
    scores = {r["instruction"]: r["score"] for r in _rows(tmp_path / "judge.jsonl") if r["kind"] == "quality"}
    assert scores[ITEMS[0][0]] == pytest.approx(9.0, abs=1e-6)

    class Uniform:
        def score_logprobs(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[list[float]]:
            return [[-1.0] for _ in completions]

    assert expected_scores(Uniform(), ["x"]) == [pytest.approx(5.5)]  # the mean of 1..10


# ---------------------------------------------------------------------------------------------- CycleAlign


class ScriptedRanker:
    """A black-box judge that ranks the numbered responses by a hidden score (more letters 'e' is better, ties by
    shorter text); it records every prompt it saw."""

    def __init__(self) -> None:
        self.compute = Compute()
        self.prompts: list[str] = []

    def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
        out = []
        for p in (x[0]["content"] for x in prompts):  # one user turn (judge_chat)
            self.prompts.append(p)
            section = p.rsplit("Now rank these.", 1)[1].rsplit("\nRanking:", 1)[0]
            parts = re.split(r"\n\[(\d+)\] ", section)
            texts = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
            order = sorted(texts, key=lambda i: (-texts[i].count("e"), len(texts[i]), i))
            out.append([Sample(text=" > ".join(f"[{i}]" for i in order), token_ids=[1], logprob=0.0,
                               finish_reason="eos")])
        return out


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import alignkit.models as models

    root = tmp_path_factory.mktemp("cycle")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about {w}."}) + "\n"
                               for w in ("bees", "rivers", "clocks", "tea", "snow", "maps", "glass", "wool")))
    cfg = LoopConfig(method="cyclealign", model="tiny-random", output_dir=str(root / "run"), rounds=2, lr=1e-2,
                     epochs=1.0, batch_size=1, lora_r=4, max_length_new_tokens=8,
                     cyclealign=CycleAlignConfig(prompts=str(prompts), heldout_prompts=2, prompts_per_round=3,
                                                 judge_model="black-box", n_samples=3, max_new_tokens=6,
                                                 min_agreement=2, demos=2))
    ranker = ScriptedRanker()
    loaded: list[str] = []
    real = models.load_model

    def spy(spec: str = models.EMBEDDED, **kw: Any) -> Any:
        loaded.append(str(spec))
        return real(spec, **kw)

    def factory(spec: str, role: str) -> Any:
        return ranker if role == "judge" else loop.default_sampler(spec, role)

    mp = pytest.MonkeyPatch()
    mp.setattr(models, "load_model", spy)
    try:
        table = run_loop(cfg, log=lambda _m: None, sampler_factory=factory)
    finally:
        mp.undo()
    return {"cfg": cfg, "root": Path(cfg.output_dir), "table": table, "ranker": ranker, "loaded": loaded}


def test_cyclealign_round_two_samples_and_believes_with_round_one_model(cycle_run: Any) -> None:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    root = cycle_run["root"]
    model1 = json.loads((root / "iter_1" / "train" / ".done").read_text())["model"]
    rows2 = _rows(root / "iter_2" / "data" / "generated.jsonl")
    assert {r["source_model"] for r in rows2} == {model1} and model1 in cycle_run["loaded"]
    # the belief log-probs stored for round 2 are round 1's model's, not the base's
    row = rows2[0]
    got = {}
    for spec in ("tiny-random", model1):
        m, tok = load_model(spec)
        lp = HFSampler(m, tok, raw=True).score_logprobs([row["prompt"]], [row["completions"][0]])[0]
        got[spec] = sum(lp) / max(len(lp), 1)
    assert row["avg_logps"][0] == pytest.approx(got[model1], abs=1e-4)
    assert abs(got["tiny-random"] - got[model1]) > 1e-3
    # CycleAlign keeps training the white-box model: round 2 starts from round 1's model
    assert f"model: {model1}\n" in (root / "iter_2" / "train" / "config.yaml").read_text()
    assert "objective: pro\n" in (root / "iter_2" / "train" / "config.yaml").read_text()


def test_cyclealign_lists_follow_the_judge_and_the_pool_holds_long_agreements(cycle_run: Any) -> None:
    from alignkit.pipelines.cyclealign import agreement

    root = cycle_run["root"]
    for k in (1, 2):
        rows = _rows(root / f"iter_{k}" / "data" / "generated.jsonl")
        kept = _rows(root / f"iter_{k}" / "data" / "kept.jsonl")
        assert len(kept) == len(rows) == 3
        for r, lst in zip(rows, kept, strict=True):
            n = len(r["completions"])
            assert lst["scores"] == [float(n - r["judge_ranking"].index(i)) for i in range(n)]
            assert r["agreement"] == agreement(r["judge_ranking"], r["belief_ranking"])
            assert r["belief_ranking"] == sorted(range(n), key=lambda i: -r["avg_logps"][i])
        pool = _rows(root / f"iter_{k}" / "data" / "pool.jsonl")
        assert all(len(p["agreement"]) >= 2 for p in pool)
    pool1 = _rows(root / "iter_1" / "data" / "pool.jsonl")
    pool2 = _rows(root / "iter_2" / "data" / "pool.jsonl")
    assert pool2[: len(pool1)] == pool1  # the pool grows across rounds
    if pool1:  # round 2's judge prompts carry dynamic demonstrations from round 1's pool
        round2 = [p for p in cycle_run["ranker"].prompts if "Tell me about" in p]
        assert any(p.count("Example.\nRequest:") >= 2 for p in round2)


def test_cyclealign_table_tracks_the_heldout_agreement_rate(cycle_run: Any) -> None:
    table = cycle_run["table"]
    assert [r["round"] for r in table] == [0, 1, 2]
    for row in table:
        assert 0.0 < row["heldout_agreement_rate"] <= 1.0
    assert all(0.0 < r["agreement_rate"] <= 1.0 for r in table[1:])


def test_cyclealign_reasks_once_then_drops_an_unparseable_ranking() -> None:
    from alignkit.pipelines.cyclealign_round import judge_rankings

    class Stubborn:
        compute = Compute()

        def __init__(self) -> None:
            self.calls = 0

        def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
            self.calls += 1
            replies = ["[1] > [1]", "[2] > [1]"] if self.calls == 1 else ["no idea"]
            return [[Sample(text=t, token_ids=[1], logprob=0.0, finish_reason="eos")]
                    for t in replies[: len(prompts)]]

    judge = Stubborn()
    rankings, raw = judge_rankings(judge, ["a", "b"], [["x", "y"], ["u", "v"]], [], CycleAlignConfig(), seed=0)
    assert rankings == [None, [1, 0]] and judge.calls == 2
    assert [r["attempt"] for r in raw] == [1, 1, 2]


def test_loop_cli_runs_and_stops_clearly_when_the_tiny_judge_ranks_nothing(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from alignkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Hi {i}"}) + "\n" for i in range(2)))
    torch.manual_seed(0)
    rc = main(["loop", "run", "recipes/cyclealign.yaml", "--model", "tiny-random", "--output-dir",
               str(tmp_path / "run"), "--set", f"cyclealign.prompts={prompts}", "--set", "cyclealign.heldout_prompts=0",
               "--set", "cyclealign.prompts_per_round=2", "--set", "cyclealign.judge_model=tiny-random",
               "--set", "cyclealign.max_new_tokens=4", "--set", "cyclealign.judge_max_new_tokens=4",
               "--set", "rounds=1"])
    assert rc == 2
    assert "round 1: no training records survived" in capsys.readouterr().err
    judge = _rows(tmp_path / "run" / "iter_1" / "data" / "judge.jsonl")
    assert [r["attempt"] for r in judge] == [1, 1, 2, 2]  # each unparseable ranking asked twice, then dropped
    assert main(["loop", "run", "recipes/cyclealign.yaml", "--output-dir", str(tmp_path / "run"),
                 "--model", "tiny-random", "--set", "rounds=2"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err


def test_cyclealign_drops_and_counts_a_list_with_an_empty_answer(tmp_path: Path) -> None:
    """A sampled empty answer used to reach the listwise record and stop the loop with 'empty completion'."""
    from alignkit.pipelines.cyclealign_round import build_round

    class Policy:
        compute = Compute()

        def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
            texts = [["", "b"], ["c", "dd"]]
            return [[Sample(text=t, token_ids=[1], logprob=0.0, finish_reason="eos") for t in texts[i]]
                    for i, _ in enumerate(prompts)]

        def score_logprobs(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[list[float]]:
            return [[-float(len(c))] for c in completions]

    class Judge:
        compute = Compute()

        def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
            return [[Sample(text="[2] > [1]", token_ids=[1], logprob=0.0, finish_reason="eos")] for _ in prompts]

    cfg = CycleAlignConfig(n_samples=2)
    summary = build_round(tmp_path, Policy(), Judge(), ["p1", "p2"], [], cfg, iteration=1, source_model="m",
                          judge_model="j", seed=0)
    assert summary["kept"] == 1 and summary["dropped"] == {"empty_completion": 1}
    assert [r["drop_reason"] for r in _rows(tmp_path / "generated.jsonl")] == ["empty_completion", None]
