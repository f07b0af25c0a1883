"""Issue #16.5 for every command: `--chat-template FILE` (config key `chat_template`, TRL's `chat_template_path`) and
the plain-string switch (`--template chat-only`, TRL's rule: plain-string prompts stay raw) reach `alignkit
generate`, `alignkit eval` and their Python API as they reach training.

What the model is fed is read off the compute counters: with one new token, a sample's `forward_tokens` is the
length of its encoded prompt, so a template that is ignored changes the count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alignkit
from alignkit.cli import main
from alignkit.errors import ConfigError

MODEL = "tiny-random:1:32"
PROMPT = "Say hi."
TEMPLATE = ("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
    from alignkit.models import load_tokenizer

    return load_tokenizer(MODEL)


@pytest.fixture()
def template_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jinja"
    path.write_text(TEMPLATE)
    return path


def custom_len(tokenizer) -> int:
    """Tokens of the prompt rendered by TEMPLATE (the rendered text carries its own special tokens)."""
    return len(tokenizer(f"<<user>>{PROMPT}<<assistant>>", add_special_tokens=False)["input_ids"])


def raw_len(tokenizer) -> int:
    """Tokens of the prompt as TRL feeds a plain string: the text itself, with the tokenizer's special tokens."""
    return len(tokenizer(PROMPT)["input_ids"])


def own_len(tokenizer) -> int:
    """Tokens of the prompt under the tokenizer's own chat template (today's default)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                         add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_three_renderings_differ(tokenizer) -> None:
    # otherwise the tests below could not tell an ignored template from an applied one
    assert len({custom_len(tokenizer), raw_len(tokenizer), own_len(tokenizer)}) == 3


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "p0", "prompt": PROMPT}) + "\n")
    return path


@pytest.mark.parametrize("flags", [[], ["--chat-template", "FILE"], ["--template", "chat-only"],
                                   ["--raw"]])
def test_generate_feeds_the_prompt_through_the_chosen_template(tmp_path: Path, tokenizer, template_file: Path,
                                                               flags: list[str]) -> None:
    flags = [str(template_file) if f == "FILE" else f for f in flags]
    out = tmp_path / "gen"
    assert main(["generate", "--strategy", "sample", "--model", MODEL, "--prompts", str(_prompts(tmp_path)),
                 "--n", "1", "--max-new-tokens", "1", "--temperature", "0", "--out-dir", str(out), *flags]) == 0
    expected = {(): own_len, ("--chat-template",): custom_len, ("--template",): raw_len, ("--raw",): raw_len}
    want = expected[tuple(f for f in flags if f.startswith("--"))](tokenizer)
    assert _rows(out / "samples.jsonl")[0]["compute"]["forward_tokens"] == want
    import yaml

    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["template"] == ("chat-only" if "--raw" in flags or "chat-only" in flags else "auto")
    assert recorded["chat_template"] == (str(template_file) if "--chat-template" in flags else None)


def test_generate_refuses_raw_with_template_always(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "--strategy", "urial", "--model", MODEL, "--prompts", str(_prompts(tmp_path)),
                 "--template", "always", "--max-new-tokens", "1", "--out-dir", str(tmp_path / "u")]) == 2
    assert "contradict template 'always'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="contradict"):  # the API says the same
        alignkit.generate(MODEL, PROMPT, raw=True, template="always", max_new_tokens=1)


def test_eval_feeds_the_prompt_through_the_chosen_template_and_resume_checks_it(
        tmp_path: Path, tokenizer, template_file: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["eval", "--model", MODEL, "--prompts", str(_prompts(tmp_path)), "--reward", "length:1:100",
              "--set", "max_new_tokens=1", "--set", "n_resamples=10"]
    custom, raw = tmp_path / "custom", tmp_path / "raw"
    assert main([*common, "--chat-template", str(template_file), "--output-dir", str(custom)]) == 0
    assert _rows(custom / "samples.jsonl")[0]["compute"]["forward_tokens"] == custom_len(tokenizer)
    assert main([*common, "--template", "chat-only", "--output-dir", str(raw)]) == 0
    assert _rows(raw / "samples.jsonl")[0]["compute"]["forward_tokens"] == raw_len(tokenizer)
    # rows generated under one template are not resumed under another
    assert main([*common, "--output-dir", str(raw)]) == 2
    assert "template: 'chat-only' there, 'auto' now" in capsys.readouterr().err


def test_api_generate_and_evaluate_take_the_same_options(tmp_path: Path, tokenizer, template_file: Path) -> None:
    from alignkit.models import load_model

    row = alignkit.generate(MODEL, PROMPT, chat_template=str(template_file), max_new_tokens=1, temperature=0)[0]
    assert row["compute"]["forward_tokens"] == custom_len(tokenizer)
    row = alignkit.generate(MODEL, PROMPT, template="chat-only", max_new_tokens=1, temperature=0)[0]
    assert row["compute"]["forward_tokens"] == raw_len(tokenizer)
    model, tok = load_model(MODEL)  # in memory: the template is applied to the given tokenizer
    alignkit.evaluate(model=model, tokenizer=tok, prompts=[PROMPT], reward="length:1:100", max_new_tokens=1,
                      n_resamples=10, chat_template_path=str(template_file), output_dir=str(tmp_path / "ev"))
    assert _rows(tmp_path / "ev" / "samples.jsonl")[0]["compute"]["forward_tokens"] == custom_len(tokenizer)


def test_online_rl_rollouts_use_the_training_template(tmp_path: Path, tokenizer, template_file: Path) -> None:
    from alignkit.rl.trainer import OnlineTrainer
    from alignkit.train.config import TrainConfig

    cfg = TrainConfig(model=MODEL, data="<memory>", objective="grpo", output_dir=str(tmp_path / "g"), max_steps=1,
                      template="chat-only", chat_template=str(template_file), progress=False,
                      objective_args={"reward": "length:1:100"})
    from alignkit.data.records import PromptExample

    trainer = OnlineTrainer(cfg, prompts=[PromptExample(PROMPT), PromptExample([{"role": "user", "content": PROMPT}])])
    assert len(trainer.sampler.encode_prompt(PROMPT)) == raw_len(tokenizer)
    assert len(trainer.sampler.encode_prompt([{"role": "user", "content": PROMPT}])) == custom_len(tokenizer)
