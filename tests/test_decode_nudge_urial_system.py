"""Nudging (A4) on instrumented toys and on real (Metaspace and byte-level) tokenizers, URIAL's exact prompt (A5.1), system-message composition (A7)."""

from __future__ import annotations

import math

import pytest
from transformers import PreTrainedTokenizerFast

from alignkit.decode.hf import HFSampler
from alignkit.decode.nudge import nudge, remove_repeated_suffix, split_words
from alignkit.decode.sampler import Compute, Sample
from alignkit.decode.system import ComposedSampler, cosa_config, with_system
from alignkit.decode.toy import EOS, ToySampler
from alignkit.decode.urial import EXAMPLES, STOP, SYSTEM, UrialPrompt, clean_output, urial
from alignkit.errors import ConfigError
from alignkit.models import load_model, load_tokenizer

# ------------------------------------------------------------------ nudging
CONF = [0.2, 0.9, 0.9, 0.1, 0.8, 0.8, 0.9, 0.9]  # base top-1 probability at each output position
VOCAB = [f" b{t}" for t in range(20)] + [f" n{t}" for t in range(20)] + [f" z{k}" for k in range(10)] + [EOS]


def base_dist(prompt, toks):
    t = len(toks)
    if t >= len(CONF):
        return {EOS: 1.0}
    # b{t} is the top-1 token with probability CONF[t]; the rest is spread thinly (each ≤ 0.09)
    return {f" b{t}": CONF[t], **{f" z{k}": (1 - CONF[t]) / 10 for k in range(10)}}


def nudger_dist(prompt, toks):
    return {f" n{len(toks)}": 1.0}


def toys() -> tuple[ToySampler, ToySampler]:
    return ToySampler(VOCAB, base_dist), ToySampler(VOCAB, nudger_dist)


def test_hands_over_exactly_when_base_top1_below_gamma() -> None:
    base, nudger = toys()
    res = nudge(base, nudger, ["q"], gamma=0.5, chunk=4)[0]
    # positions 0 and 3 have top-1 < 0.5: the nudger writes exactly those
    assert res.completion == " n0 b1 b2 n3 b4 b5 b6 b7"
    for pos, (source, text) in enumerate(
            (s, w) for s, t in res.info["segments"] for w in split_words(t.lstrip(" ")) if w.strip()):
        assert (source == "nudger") == (CONF[pos] < 0.5), (pos, source, text)
    assert res.info["nudged_token_fraction"] == pytest.approx(2 / 8)
    assert res.info["stop_reason"] == "base_finished"
    assert res.compute.forward_tokens == base.compute.forward_tokens + nudger.compute.forward_tokens


def test_gamma_extremes() -> None:
    base, nudger = toys()
    low = nudge(base, nudger, ["q"], gamma=0.0, chunk=4)[0]
    assert low.completion == " n0 b1 b2 b3 b4 b5 b6 b7"  # first word always from the nudger, then the base
    base, nudger = toys()
    high = nudge(base, nudger, ["q"], gamma=1.5, chunk=4, max_tokens=6)[0]
    assert all(s == "nudger" for s, _ in high.info["segments"])
    assert high.info["nudged_token_fraction"] == 1.0
    with pytest.raises(ConfigError):
        nudge(base, nudger, ["q"], gamma=-1)


def test_word_helpers() -> None:
    assert split_words("  a b  c") == ["  a", " b", " ", " c"]
    assert "".join(split_words("  a b  c")) == "  a b  c"
    chunk = "All work and no play makes Jack. "
    assert remove_repeated_suffix("Intro. " + chunk * 3) == "Intro. " + chunk
    assert remove_repeated_suffix("short short ") == "short short "


# ------------------------------------------------------------------ nudging with real tokenizers
SENTENCE = "The cat sat on the mat."


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style (Metaspace, "▁word") BPE tokenizer trained here on a few sentences: like Llama-2's
    and Gemma's, it decodes "▁cat" alone as "cat", without the word-initial space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator([SENTENCE, "A dog ran in the park.", "The bird sang on the tree."] * 3,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


class ScriptedBase:
    """A base model that always continues toward SENTENCE with top-1 probability 0.2, tokenized and decoded by
    HFSampler's own text methods over a real tokenizer (only the logits are scripted)."""

    tokenize, decode, count_tokens = HFSampler.tokenize, HFSampler.decode, HFSampler.count_tokens

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        self.tokenizer, self.compute = tokenizer, Compute()

    def extend(self, prompts, prefixes, max_new_tokens=16, temperature=1.0, **_):
        (prefix,) = prefixes
        full, pre = self.tokenize(SENTENCE), self.tokenize(prefix)
        assert SENTENCE.startswith(prefix) and full[:len(pre)] == pre, (prefix, full, pre)
        ids = full[len(pre):] + [self.tokenizer.eos_token_id]
        ids, reason = ids[:max_new_tokens], "eos" if len(ids) <= max_new_tokens else "length"
        return [Sample(self.decode(ids), ids, 0.0, reason, [math.log(0.2)] * len(ids))]


class ScriptedNudger:
    """An aligned model that writes SENTENCE three words at a time."""

    def __init__(self) -> None:
        self.compute = Compute()

    def extend(self, prompts, prefixes, max_new_tokens=16, temperature=1.0, **_):
        rest = split_words(SENTENCE[len(prefixes[0]):])
        text = "".join(rest[:3])
        return [Sample(text, [], 0.0, "eos" if len(rest) <= 3 else "length")]


@pytest.mark.parametrize("tokenizer", ["metaspace", "tiny-random"])
def test_base_agreement_is_read_in_context_for_any_tokenizer(tokenizer: str) -> None:
    tok = metaspace_tokenizer() if tokenizer == "metaspace" else load_tokenizer("tiny-random")
    if tokenizer == "metaspace":  # the trap: the token alone decodes without its space
        assert tok.decode(tok(" cat", add_special_tokens=False)["input_ids"]) == "cat"
    res = nudge(ScriptedBase(tok), ScriptedNudger(), ["q"], gamma=0.5, chunk=16)[0]
    # The base is never confident (0.2 < γ) but always agrees with the nudger's next word, so control goes back
    # to it after every first word: nudger "The", base " cat", nudger " sat", base " on", nudger finishes.
    assert res.info["segments"] == [("nudger", "The"), ("base", " cat"), ("nudger", " sat"), ("base", " on"),
                                    ("nudger", " the mat.")]
    assert res.completion == SENTENCE  # base text keeps its word-initial spaces too
    assert res.info["stop_reason"] == "nudger_finished"


def test_nudging_needs_a_base_that_can_tokenize() -> None:
    class NoTokenize:
        compute = Compute()

        def decode(self, ids):
            return ""

        def count_tokens(self, text):
            return 0

    with pytest.raises(ConfigError, match="tokenize"):
        nudge(NoTokenize(), ScriptedNudger(), ["q"])  # type: ignore[arg-type]


# ------------------------------------------------------------------ URIAL
def test_urial_prompt_is_exactly_the_specified_format() -> None:
    up = UrialPrompt()
    built = up.build("How do I boil an egg?")
    expected_head = SYSTEM + "\n\n" + "".join(
        f"# Query:\n```\n{q}\n```\n\n# Answer:\n```\n{a}\n```\n\n" for q, a in EXAMPLES)
    assert up.text == expected_head
    assert built == expected_head.rstrip("\n") + "\n# Query:\n```\nHow do I boil an egg?\n```\n\n# Answer:\n```\n"
    assert built.startswith("# Instruction\n\n") and len(EXAMPLES) == 3
    assert STOP == ("# Query", "# User")
    custom = UrialPrompt(system="SYS", examples=(("q1", "a1"),))
    assert custom.build("q2") == "SYS\n\n# Query:\n```\nq1\n```\n\n# Answer:\n```\na1\n```\n# Query:\n```\nq2\n```\n\n# Answer:\n```\n"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"}]
    assert custom.build(chat).endswith("# Query:\n```\nhi\n```\n\n# Answer:\n```\nhello\n```\n\n"
                                       "# Query:\n```\nbye\n```\n\n# Answer:\n```\n")
    assert UrialPrompt.from_text("RAW TEXT\n").build("q") == "RAW TEXT\n# Query:\n```\nq\n```\n\n# Answer:\n```\n"
    assert clean_output("  ```Hello!``` \n") == "Hello!"


def test_urial_runs_on_a_raw_sampler_and_stops() -> None:
    vocab = [" Hi", "!", "```", "\n", "# Query", EOS]
    script = [" Hi", "!", "```", "\n", "# Query", " Hi"]
    toy = ToySampler(vocab, lambda p, toks: {script[min(len(toks), 5)]: 1.0})
    toy.raw = True  # type: ignore[attr-defined]
    res = urial(toy, ["hello"])[0]
    assert res.completion == "Hi!"  # cut at "# Query", backticks removed, stripped
    assert res.info["finish_reason"] == "stop"
    assert toy.calls[0][1] == UrialPrompt().build("hello")
    model, tok = load_model("tiny-random")
    with pytest.raises(ConfigError, match="raw=True"):
        urial(HFSampler(model, tok), ["hello"])


# ------------------------------------------------------------------ system messages
def test_system_composition() -> None:
    cfg = cosa_config(["Violence", "Privacy Violations"])
    assert "- Violence:" in cfg and "- Privacy Violations:" in cfg and "Financial" not in cfg
    assert "None." in cosa_config([])
    with pytest.raises(ConfigError, match="Other Harms"):
        cosa_config(["Other Harms"])
    assert with_system("q", "S") == [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]
    old = [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}]
    assert with_system(old, "S")[0]["content"] == "S" and len(with_system(old, "S")) == 2
    assert with_system("q", "S", mode="prepend") == [{"role": "user", "content": "S\nq"}]
    toy = ToySampler(["a", EOS], lambda p, t: {EOS: 1.0})
    composed = ComposedSampler(toy, lambda p: with_system(p, "S"))
    composed.sample(["q"], max_new_tokens=2)
    assert toy.calls[-1][1] == [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]
    assert composed.compute is toy.compute and composed.decode([0]) == "a"
