"""Ditto role-play self-alignment (spec wave2_selfalign_merge.md §3): the builder's guarantees (no profile in the
training context, refused contrastive turns, seeded order), WikiRoleEval's aggregation on the spec's worked
example and its parsers, and the loop on tiny-random: SFT on simulated dialogues lowers the NLL of held-out
characters' in-character answers."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from alignkit.decode.sampler import Compute, Sample
from alignkit.errors import DataError
from alignkit.evaluate.roleplay import (
    VERDICT,
    aggregate,
    consistency_turn,
    knowledge_turn,
    parse_consistency,
    parse_knowledge,
    parse_rejection,
    rejection_vote,
    roleplay_eval,
)
from alignkit.pipelines.ditto import (
    IN_CHARACTER_REFUSALS,
    DittoConfig,
    read_characters,
    render_profile,
    simulate,
)
from alignkit.safety.judges import is_refusal


def _character(name: str, desc: str, claims: list[list[str]]) -> dict[str, Any]:
    return {"name": name, "aliases": [], "description": desc, "claims": claims, "lang": "en", "category": "person",
            "wiki_summary": f"{name} is remembered as {desc}."}


CHARS = [
    _character("Ada Lovelace", "a mathematician of the 1840s", [["birthplace", "London"], ["field", "mathematics"],
                                                              ["collaborator", "Charles Babbage"],
                                                              ["motto", "poetical science"]]),
    _character("Genghis Khan", "a Mongol ruler of the 13th century", [["birthplace", "Delüün Boldog"],
                                                                    ["title", "Great Khan"], ["capital", "Karakorum"],
                                                                    ["horse", "a steppe pony"]]),
    _character("Marie Curie", "a physicist and chemist", [["birthplace", "Warsaw"], ["element", "polonium"],
                                                         ["prize", "the Nobel Prize"], ["husband", "Pierre Curie"]]),
]
HELDOUT = [_character("Isaac Newton", "a natural philosopher", [["birthplace", "Woolsthorpe"], ["law", "gravitation"],
                                                                ["college", "Trinity"], ["tool", "a prism"]]),
           _character("Cleopatra", "a queen of Egypt", [["city", "Alexandria"], ["language", "Greek"],
                                                        ["ally", "Mark Antony"], ["river", "the Nile"]])]


def _sample(text: str) -> list[Sample]:
    return [Sample(text=text, token_ids=[1], logprob=0.0, finish_reason="eos")]


class ScriptedSimulator:
    """Writes the questions and in-character answers a good simulator would; `leak` makes the question about the
    motto quote its value, `stubborn` makes Genghis Khan answer contrastive questions instead of declining.
    Teacher-forced scoring goes to a real model when one is given (the NLL smoke test)."""

    def __init__(self, real: Any = None, leak: bool = False, stubborn: bool = False) -> None:
        self.compute, self.real, self.leak, self.stubborn = Compute(), real, leak, stubborn

    def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
        return [_sample(self._reply(p[0]["content"]) if len(p) == 1 else self._in_character(p)) for p in prompts]

    @staticmethod
    def _in_character(messages: list[dict[str, str]]) -> str:
        """Answering a user turn in a dialogue (the evaluation): in character, declining contrastive asks."""
        name = re.match(r"You are (.+?),", messages[0]["content"]).group(1)
        if messages[-1]["content"].startswith("Could you tell me about the"):
            return f"I'm afraid I know nothing of such things; I am {name}."
        return f"As {name}, I can tell you."

    def _reply(self, text: str) -> str:
        if m := re.search(r"about this fact: (.+?) of (.+?), phrased", text):
            return f"Could you tell me about the {m.group(1)} of {m.group(2)}?\nextra line"
        if m := re.search(r"about this fact: (.+?)\. Do not", text):
            if self.leak and m.group(1) == "motto":
                return "Is your motto poetical science?"
            return f"What can you tell me about your {m.group(1)}?"
        name = re.match(r"You are (.+?)\. Here is your profile", text).group(1)
        if "politely decline" in text:
            if self.stubborn and name == "Genghis Khan":
                return "Certainly, here is everything about it."
            return f"I'm afraid I know nothing of such things; I am {name}."
        prop = re.search(r"your (\w+)", text.rsplit("User: ", 1)[1]).group(1)
        value = re.search(rf"\n{re.escape(prop)}: (.+)\n", text).group(1)
        return f"As {name}, I can tell you that my {prop} is {value}."

    def score_logprobs(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[list[float]]:
        return self.real.score_logprobs(prompts, completions)


def _dialogues(seed: int = 0, **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    sim = ScriptedSimulator(leak=kw.pop("leak", False), stubborn=kw.pop("stubborn", False))
    return simulate(sim, CHARS, DittoConfig(min_turns=2, max_turns=4, **kw), seed)


def test_no_profile_text_reaches_a_system_or_user_message() -> None:
    dialogues, turns, drops = _dialogues(leak=True)
    assert drops["question_quotes_profile"] == 1
    assert [t["question"] for t in turns if t["drop_reason"] == "question_quotes_profile"] == [
        "Is your motto poetical science?"]
    by_name = {c["name"]: c for c in CHARS}
    for d in dialogues:
        ch = by_name[d["character"]]
        assert d["messages"][0] == {"role": "system", "content": f"You are {ch['name']}, {ch['description']}. "
                                                                  "Stay in character."}
        context = [m["content"] for m in d["messages"] if m["role"] in ("system", "user")]
        for text in context:
            assert ch["wiki_summary"] not in text
            for prop, value in ch["claims"]:
                assert f"{prop}: {value}" not in text and value not in text
        assert all("\n" not in m["content"] for m in d["messages"] if m["role"] == "user")  # first line only


def test_contrastive_turns_are_marked_and_declined_in_character() -> None:
    dialogues, turns, drops = _dialogues(stubborn=True)
    assert drops["contrastive_not_refused"] == 2  # Genghis Khan's two contrastive answers did not decline
    n_contrastive = 0
    for d in dialogues:
        answers = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
        assert len(answers) == len(d["turn_meta"])
        for meta, answer in zip(d["turn_meta"], answers, strict=True):
            assert meta["reject"] == (meta["type"] == "contrastive")
            if meta["reject"]:
                n_contrastive += 1
                assert is_refusal(answer, IN_CHARACTER_REFUSALS)
                assert meta["evidence"][0] not in [c for c in CHARS if c["name"] == d["character"]][0]["claims"]
            else:
                assert meta["evidence"][0][1] in answer
    assert n_contrastive == 4  # 2 each for Ada Lovelace and Marie Curie


def test_dialogue_turn_order_is_deterministic_under_a_seed() -> None:
    first, _, _ = _dialogues(seed=3)
    again, _, _ = _dialogues(seed=3)
    other, _, _ = _dialogues(seed=4)
    assert first == again
    assert [d["messages"] for d in first] != [d["messages"] for d in other]
    for d in first:
        assert 1 <= len(d["turn_meta"]) <= 4


def test_bad_character_files_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CHARS[0]) + "\n" + json.dumps({"name": "X", "claims": [["only one"]]}) + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl:2:claims"):
        read_characters(str(path))
    path.write_text(json.dumps(CHARS[0]) + "\n")
    with pytest.raises(DataError, match="at least two characters"):
        read_characters(str(path))


def test_wikiroleeval_aggregation_worked_example() -> None:
    true, other = "Ada Lovelace", "Marie Curie"
    c1 = consistency_turn([true, true, other], true)
    c2 = consistency_turn([true, None, true], true)
    assert c1 == pytest.approx(0.666667, abs=1e-6) and c2 == 1.0
    k1, k2 = knowledge_turn([7, 8, 6]), knowledge_turn([9, 9, 8])
    assert k1 == 7.0 and k2 == pytest.approx(8.666667, abs=1e-6)
    turns = [{"consistency": c1, "knowledge": k1, "rejection_vote": 0, "rejection_label": 0},
             {"consistency": c2, "knowledge": k2, "rejection_vote": 1, "rejection_label": 0}]
    got = aggregate(turns)
    assert got["consistency"] == pytest.approx(0.833333, abs=1e-6)
    assert got["rejection"] == 0.5
    assert got["knowledge"] == pytest.approx(7.833333, abs=1e-6)
    # a turn whose knowledge replies all failed to parse is null in the strict-JSON turn file, and skipped
    unparsed = {"consistency": 1.0, "knowledge": knowledge_turn([None, None]), "rejection_vote": None,
                "rejection_label": 1}
    assert json.loads(json.dumps(unparsed, allow_nan=False))["knowledge"] is None
    assert aggregate([*turns, unparsed])["knowledge"] == pytest.approx(7.833333, abs=1e-6)


def test_judge_reply_parsers_and_votes() -> None:
    names = ["Ada Lovelace", "Marie Curie"]
    assert parse_consistency(f"Reasons...\n{VERDICT} Marie Curie.", names) == "Marie Curie"
    assert parse_consistency(f"{VERDICT} Cleopatra", names) is None
    assert parse_consistency("It is Ada Lovelace.", names) is None
    assert parse_knowledge("good detail\n8") == 8.0 and parse_knowledge("fine\n**7/10**") == 7.0
    assert parse_knowledge("8\nbecause") is None and parse_knowledge("11") is None
    assert [parse_rejection(x) for x in ("1", " 0.", "yes", "10")] == [1, 0, None, None]
    assert rejection_vote([1, 0, 1]) == 1 and rejection_vote([0, 1]) == 0  # tie: the first parsable reply
    assert rejection_vote([None, 1, 0]) == 1 and rejection_vote([None, None]) is None
    assert consistency_turn([None, None], "x") == 0.0 and knowledge_turn([None]) is None


class ToyJudge:
    """Names the character from the 'As NAME' opening, gives knowledge 7, votes 1 iff the answer declines."""

    compute = Compute()

    def __init__(self, garbage: bool = False) -> None:
        self.garbage = garbage

    def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
        out = []
        for p in (x[0]["content"] for x in prompts):
            answer = re.search(r"\nAssistant[^:]*: (.*)\n", p).group(1)
            if self.garbage:
                text = "hmm"
            elif "Which of these characters" in p:
                m = re.search(r"(?:As|I am) ([A-Z][\w ]*?)(?:[,.;]|$)", answer)
                text = f"{VERDICT} {m.group(1) if m else 'nobody'}"
            elif "Rate from 1 to 10" in p:
                text = "solid\n7"
            else:
                text = "1" if is_refusal(answer, IN_CHARACTER_REFUSALS) else "0"
            out.append([Sample(text=text, token_ids=[1], logprob=0.0, finish_reason="eos")] * n)
        return out


class Replay:
    """A policy that answers each user turn with the simulated answer (what a perfectly trained model would)."""

    compute = Compute()

    def __init__(self, dialogues: list[dict[str, Any]]) -> None:
        self.answers = {}
        for d in dialogues:
            msgs = d["messages"]
            for i, m in enumerate(msgs):
                if m["role"] == "user":  # the same question is asked of several characters
                    self.answers[(msgs[0]["content"], m["content"])] = msgs[i + 1]["content"]

    def sample(self, prompts: Sequence[Any], n: int = 1, **kw: Any) -> list[list[Sample]]:
        return [_sample(self.answers[(p[0]["content"], p[-1]["content"])]) for p in prompts]


def test_roleplay_eval_scores_turns_and_survives_unparsable_judges() -> None:
    dialogues, _, _ = _dialogues()
    profiles = {c["name"]: render_profile(c) for c in CHARS}
    turns, summary = roleplay_eval(Replay(dialogues), ToyJudge(), dialogues, profiles, n=3)
    assert summary["turns"] == sum(len(d["turn_meta"]) for d in dialogues) == len(turns)
    assert summary["consistency"] == 1.0 and summary["knowledge"] == 7.0 and summary["rejection"] == 1.0
    assert all(len(t["judge_raw"]["knowledge"]) == 3 for t in turns)
    _, bad = roleplay_eval(Replay(dialogues), ToyJudge(garbage=True), dialogues, profiles, n=2)
    assert bad["consistency"] == 0.0 and bad["knowledge"] is None and bad["rejection"] is None
    assert bad["rejection_missing"] == bad["turns"]


def test_ditto_loop_sft_lowers_the_nll_of_heldout_characters_answers(tmp_path: Path) -> None:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model
    from alignkit.pipelines.loop import DittoLoopConfig, LoopConfig, run_loop

    chars, heldout = tmp_path / "chars.jsonl", tmp_path / "heldout.jsonl"
    extra = [_character(f"Person{i} Example", f"figure number {i}",
                        [[f"fact{j}", f"value {i}-{j}"] for j in range(5)]) for i in range(3)]
    chars.write_text("".join(json.dumps(c) + "\n" for c in CHARS + extra))
    heldout.write_text("".join(json.dumps(c) + "\n" for c in HELDOUT))
    cfg = LoopConfig(method="ditto", model="tiny-random", output_dir=str(tmp_path / "run"), rounds=1, lr=1e-2,
                     epochs=1.0, batch_size=4, lora_r=8, max_length_new_tokens=48,
                     ditto=DittoLoopConfig(characters=str(chars), eval_characters=str(heldout), min_turns=2,
                                           max_turns=3, judge_model="toy-judge", judge_samples=2))

    def factory(spec: str, role: str) -> Any:
        if role == "judge":
            return ToyJudge()
        model, tok = load_model(spec)
        return ScriptedSimulator(real=HFSampler(model, tok, raw=True))

    table = run_loop(cfg, log=lambda _m: None, sampler_factory=factory)
    root = Path(cfg.output_dir)
    dialogues = [json.loads(x) for x in (root / "iter_1" / "data" / "dialogues.jsonl").read_text().splitlines()]
    assert len(dialogues) >= 12
    kept = [json.loads(x) for x in (root / "iter_1" / "data" / "kept.jsonl").read_text().splitlines()]
    assert len(kept) == sum(len(d["turn_meta"]) for d in dialogues)  # one SFT record per assistant turn
    assert all(r["prompt"][0]["role"] == "system" and r["prompt"][-1]["role"] == "user" for r in kept)
    before, after = table[0]["answer_nll"], table[1]["answer_nll"]
    assert after < before - 0.05, (before, after)
    for row in table:  # the toy judge's scores of the scripted answers, through the loop's table
        assert (row["consistency"], row["knowledge"], row["rejection"]) == (1.0, 7.0, 1.0)
    turns = (root / "iter_1" / "eval" / "roleplay_turns.jsonl").read_text().splitlines()
    assert len(turns) == sum(len(d["turn_meta"]) for d in map(json.loads, (
        root / "iter_0" / "eval" / "dialogues.jsonl").read_text().splitlines()))
