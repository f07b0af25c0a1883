"""Issue #16: a TRL user switches in five minutes. Each TRL dataset format (built here, as TRL's docs show them)
and a TRL-style config go through the CLI and the Python API; one test (or more) per issue item."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignkit.cli import main
from alignkit.config import load_config
from alignkit.data.io import read_records
from alignkit.data.records import PairwiseExample, SFTExample, UnpairedExample
from alignkit.errors import ConfigError, DataError
from alignkit.train.config import TrainConfig

MODEL = "tiny-random:1:32"
FAST = ["--set", "progress=false", "--set", "torch_threads=1", "--set", "max_length=64"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# TRL's dataset formats (https://huggingface.co/docs/trl/dataset_formats), a few rows each
IMPLICIT_STRINGS = [
    {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    {"chosen": "Two plus two is four.", "rejected": "Two plus two is five."},
    {"chosen": "Water boils at 100 C.", "rejected": "Water boils at 50 C."},
    {"chosen": "Paris is in France.", "rejected": "Paris is in Spain."},
]
LM_TEXT = [{"text": "The sky is blue."}, {"text": "Two plus two is four."}, {"text": "Water is wet."},
           {"text": "Paris is in France."}]
EXPLICIT = [{"prompt": "The sky is", "chosen": "blue.", "rejected": "green."},
            {"prompt": "Two plus two is", "chosen": "four.", "rejected": "five."},
            {"prompt": "Water boils at", "chosen": "100 C.", "rejected": "50 C."},
            {"prompt": "Paris is in", "chosen": "France.", "rejected": "Spain."}]


# ---------------------------------------------------------------------------------------------------------- 1


def test_implicit_prompt_strings_split_at_the_shared_prefix_like_trl_extract_prompt() -> None:
    # trl.extract_prompt: the longest common prefix is the prompt; the space before the split stays with the
    # completions ("The sky is" + " blue." / " green.").
    [first, *_] = read_records(IMPLICIT_STRINGS).records
    assert first == PairwiseExample("The sky is", " blue.", " green.")
    with pytest.raises(DataError, match="share no leading text"):
        read_records([{"chosen": "Yes.", "rejected": "No."}])


def test_implicit_prompt_matches_trl_on_the_same_rows() -> None:
    trl = pytest.importorskip("trl")
    for row in IMPLICIT_STRINGS:
        ours = read_records([row]).records[0]
        theirs = trl.extract_prompt(dict(row))
        assert (ours.prompt, ours.chosen, ours.rejected) == (theirs["prompt"], theirs["chosen"], theirs["rejected"])


# ---------------------------------------------------------------------------------------------------------- 2


def test_text_column_is_language_modeling_sft_over_the_whole_text() -> None:
    from alignkit.data.io import record_to_row
    from alignkit.data.tokenize import encode_example
    from alignkit.models import load_tokenizer

    result = read_records(LM_TEXT)
    assert result.kind == "sft" and result.records[0] == SFTExample("", "The sky is blue.")
    assert record_to_row(result.records[0]) == {"text": "The sky is blue."}  # written back as it was read
    tok = load_tokenizer("tiny-random")
    enc = encode_example(tok, "", "The sky is blue.")
    # no chat template around an empty prompt: every text token (and EOS) is a label
    assert enc.completion_ids == tok("The sky is blue.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.prompt_ids == tok("", add_special_tokens=True)["input_ids"]


# ---------------------------------------------------------------------------------------------------------- 3


def test_unpaired_objectives_unpair_pairwise_data_and_say_so() -> None:
    result = read_records(EXPLICIT, "unpaired")
    assert [(r.completion, r.label) for r in result.records[:2]] == [("blue.", True), ("green.", False)]
    assert all(isinstance(r, UnpairedExample) for r in result.records) and len(result) == 8
    assert "unpaired for an unpaired objective" in result.summary() and "data convert --to unpaired" in result.summary()
    with pytest.raises(DataError, match="completion"):
        read_records(EXPLICIT, "unpaired", unpair=False)


def test_kto_trains_on_pairwise_data_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", EXPLICIT)
    rc = main(["train", "--model", MODEL, "--data", str(data), "--objective", "kto", "--output-dir",
               str(tmp_path / "kto"), "--max-steps", "1", "--per-device-train-batch-size", "4", *FAST])
    assert rc == 0
    assert "unpaired for an unpaired objective" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------- 4


def _fake_hub_dataset(cache: Path, repo: str, rows_by_split: dict[str, list[dict]]) -> None:
    """A dataset repo as huggingface_hub's cache lays it out (refs/main -> snapshots/<commit>/)."""
    root = cache / f"datasets--{repo.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit / "data"
    snap.mkdir(parents=True)
    for split, rows in rows_by_split.items():
        write_jsonl(snap / f"{split}.jsonl", rows)


def test_every_command_reads_named_sources_through_one_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    suite = read_records("suite:test")
    assert suite.kind == "prompt" and len(suite) == 400 and suite.records[0].constraints
    cache = tmp_path / "hub"
    _fake_hub_dataset(cache, "someone/prefs", {"train": EXPLICIT, "test": EXPLICIT[:2]})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert len(read_records("someone/prefs", split="test")) == 2
    assert len(read_records("someone/prefs:train")) == 4  # NAME:SPLIT, as suite:test
    with pytest.raises(DataError, match="choose a split"):
        read_records("someone/prefs")
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="local Hugging Face cache"):
        read_records("nobody/nothing")
    # `train --split` (TRL's dataset_train_split) is a real flag now
    rc = main(["train", "--model", MODEL, "--data", "someone/prefs", "--split", "train", "--objective", "dpo",
               "--output-dir", str(tmp_path / "dpo"), "--max-steps", "1", "--set", "batch_size=2", *FAST])
    assert rc == 0


def test_generate_reads_suite_test_as_the_readme_says(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    rc = main(["generate", "--strategy", "sample", "--model", MODEL, "--prompts", "suite:test-v1", "--n", "1",
               "--max-new-tokens", "2", "--batch-size", "64", "--out-dir", str(out)])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 128 and rows[0]["id"] == "test-0000"  # the suite file's own ids


def test_split_flag_is_accepted_by_every_data_command() -> None:
    from alignkit.cli import build_parser

    parser = build_parser()
    for argv in (["train", "--split", "x"], ["generate", "--strategy", "sample", "--prompts", "p", "--out-dir", "o",
                                             "--split", "x"],
                 ["eval", "--split", "x"], ["reward", "score", "--reward", "r", "--completions", "c", "--out", "o",
                                            "--split", "x"],
                 ["data", "build", "--from", "verifier", "--out", "o.jsonl", "--split", "x"]):
        assert parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------- 5


def test_chat_template_file_and_trl_plain_string_switch(tmp_path: Path) -> None:
    from alignkit.data.tokenize import render_prompt
    from alignkit.models import load_model

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}"
                        "{% if add_generation_prompt %}<<assistant>>{% endif %}")
    _, tok = load_model(MODEL, chat_template=str(template))
    assert render_prompt(tok, "Hi") == "<<user>>Hi<<assistant>>"  # today's default: strings templated
    assert render_prompt(tok, "Hi", "chat-only") == "Hi"  # TRL's rule: plain strings stay raw
    assert render_prompt(tok, [{"role": "user", "content": "Hi"}], "chat-only") == "<<user>>Hi<<assistant>>"
    cfg = load_config(TrainConfig, None, ["chat_template_path=" + str(template), "template=chat-only"])
    assert cfg.chat_template == str(template) and cfg.template == "chat-only"


# ---------------------------------------------------------------------------------------------------------- 6

TRL_DPO_YAML = {  # a TRL DPOConfig + ModelConfig + ScriptArguments file, as `trl dpo --config` takes it
    "model_name_or_path": MODEL, "learning_rate": 1.0e-3, "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 2, "num_train_epochs": 1, "max_steps": 2, "warmup_ratio": 0.5,
    "lr_scheduler_type": "cosine", "logging_steps": 1, "save_steps": 2, "seed": 3, "bf16": False,
    "use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": "all-linear", "beta": 0.2,
    "loss_type": "sigmoid", "report_to": "none", "max_length": 64, "gradient_checkpointing": False,
}


def test_trl_names_map_to_alignkit_keys() -> None:
    cfg = load_config(TrainConfig, None, [f"{k}={v}" for k, v in TRL_DPO_YAML.items()])
    assert (cfg.model, cfg.lr, cfg.batch_size, cfg.grad_accum, cfg.epochs, cfg.max_steps) == (
        MODEL, 1e-3, 2, 2, 1.0, 2)
    assert (cfg.warmup_ratio, cfg.scheduler, cfg.log_every, cfg.save_every, cfg.seed, cfg.beta) == (
        0.5, "cosine", 1, 2, 3, 0.2)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules, cfg.objective, cfg.report_to) == (
        4, 8, ["all-linear"], "dpo", [])
    assert load_config(TrainConfig, None, ["use_peft=true"]).lora.r == 16  # TRL ModelConfig's lora_r
    assert load_config(TrainConfig, None, ["bf16=true"]).mixed_precision == "bf16"
    assert load_config(TrainConfig, None, ["loss_type=ipo"]).objective == "ipo"
    llama_factory = ["stage=kto", "pref_beta=0.1", "finetuning_type=lora", "lora_rank=8", "lora_target=all",
                     "cutoff_len=256"]
    lf = load_config(TrainConfig, None, llama_factory)
    assert (lf.objective, lf.beta, lf.lora.r, lf.lora.target_modules, lf.max_length) == (
        "kto", 0.1, 8, ["all-linear"], 256)


def test_unknown_keys_still_fail_listing_valid_and_trl_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['learnin_rate'\].*valid keys.*learning_rate"):
        load_config(TrainConfig, None, ["learnin_rate=1e-5"])
    both = tmp_path / "both.yaml"
    both.write_text("lr: 1.0e-5\nlearning_rate: 2.0e-5\n")
    with pytest.raises(ConfigError, match="both"):
        load_config(TrainConfig, both)
    with pytest.raises(ConfigError, match="no alignkit objective"):
        load_config(TrainConfig, None, ["loss_type=exo_pair"])
    # a later layer wins under either name: file lr, then --set learning_rate
    one = tmp_path / "one.yaml"
    one.write_text("lr: 1.0e-5\nlora: {r: 4, alpha: 8}\n")
    cfg = load_config(TrainConfig, one, ["learning_rate=3e-5", "lora_r=2"])
    assert (cfg.lr, cfg.lora.r, cfg.lora.alpha) == (3e-5, 2, 8)


def test_common_trl_flags_are_real_cli_flags(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--learning-rate", "--per-device-train-batch-size", "--gradient-accumulation-steps",
                 "--num-train-epochs", "--max-steps", "--warmup-ratio", "--lr-scheduler-type", "--logging-steps",
                 "--save-steps", "--seed", "--bf16", "--use-peft", "--lora-r", "--lora-alpha",
                 "--lora-target-modules", "--beta", "--loss-type", "--report-to", "--split", "--chat-template",
                 "--push-to-hub", "--hub-model-id"):
        assert flag in text, flag


def test_a_trl_config_file_trains_from_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump({**TRL_DPO_YAML, "dataset_name": str(write_jsonl(tmp_path / "p.jsonl",
                                                                                       IMPLICIT_STRINGS)),
                                      "output_dir": str(tmp_path / "run"), "disable_tqdm": True}))
    assert main(["train", str(config), "--set", "torch_threads=1"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["lr"] == 1e-3 and saved["lora"]["r"] == 4 and saved["scheduler"] == "cosine"
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2]
    # warmup_ratio 0.5 of 2 steps = 1 warmup step: step 1 at lr 0 (transformers' warmup), step 2 decays
    lrs = [s["lr"] for s in steps if "lr" in s]
    assert lrs[0] == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------------------- 7


def test_lora_passes_peft_lora_config_through() -> None:
    from alignkit.models import load_model

    cfg = load_config(TrainConfig, None, ["lora.r=4", "lora.lora_alpha=8", "lora.target_modules=all-linear",
                                          "lora.use_rslora=true", "lora.lora_dropout=0.1",
                                          "lora.modules_to_save=[lm_head]"])
    peft_cfg = cfg.lora.peft_config()
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout, peft_cfg.use_rslora) == (4, 8, 0.1, True)
    assert peft_cfg.target_modules == "all-linear" and list(peft_cfg.modules_to_save) == ["lm_head"]
    model, _ = load_model(MODEL, lora=cfg.lora)
    wrapped = {n.split(".lora_A")[0].split(".")[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= wrapped
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['lora.not_a_peft_field'\]"):
        load_config(TrainConfig, None, ["lora.not_a_peft_field=1"])
    assert TrainConfig(lora={"r": 8}).lora.r == 8  # docs/rl.md's spelling in Python


# ---------------------------------------------------------------------------------------------------------- 8


def test_every_trl_scheduler_name_is_transformers_get_scheduler() -> None:
    import torch
    from transformers import get_scheduler

    from alignkit.runtime import SCHEDULERS, make_scheduler

    for name in SCHEDULERS:
        kwargs = {"num_decay_steps": 3} if name == "warmup_stable_decay" else (
            {"min_lr_rate": 0.1} if "min_lr" in name else {})
        ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ours = make_scheduler(ours_opt, name, 2, 10, kwargs)
        ref = get_scheduler(name, ref_opt, num_warmup_steps=2, num_training_steps=10,
                            scheduler_specific_kwargs=kwargs)
        a, b = [], []
        for _ in range(10):
            a.append(ours.get_last_lr()[0])
            b.append(ref.get_last_lr()[0])
            ours_opt.step(), ref_opt.step(), ours.step(), ref.step()
        if name != "constant":  # alignkit's constant honours warmup (= constant_with_warmup)
            assert a == pytest.approx(b), name
    with pytest.raises(ConfigError, match="get_scheduler"):
        TrainConfig(data="x", scheduler="reduce_lr_on_plateau").validate()


# ---------------------------------------------------------------------------------------------------------- 9


def test_top_level_api_keeps_submodule_imports() -> None:
    import alignkit
    import alignkit.evaluate.stats
    import alignkit.train.engine
    from alignkit import evaluate, generate, train

    assert callable(train) and callable(evaluate) and callable(generate)
    assert train is alignkit.train and hasattr(alignkit.train, "engine")
    assert alignkit.evaluate.stats.mean_ci and alignkit.train.engine.train
    from alignkit.train import train as engine_train  # the engine's cfg-based entry point is unchanged

    assert engine_train is alignkit.train.engine.train


def test_api_trains_a_loaded_model_on_a_dataset_object(tmp_path: Path) -> None:
    from datasets import Dataset

    import alignkit
    from alignkit.models import load_model

    model, tokenizer = load_model(MODEL)
    dataset = Dataset.from_list(IMPLICIT_STRINGS)
    result = alignkit.train(model=model, tokenizer=tokenizer, train_dataset=dataset, objective="dpo",
                            learning_rate=1e-3, per_device_train_batch_size=2, max_steps=1, lora={"r": 4},
                            output_dir=str(tmp_path / "api"), progress=False, max_length=64)
    assert result.steps == 1 and (result.final_dir / "adapter_config.json").exists()
    assert yaml.safe_load((tmp_path / "api" / "config.yaml").read_text())["data"] == "<in-memory dataset>"
    # records and TRL's `args=` / `processing_class=` names
    records = [PairwiseExample("Q", "good", "bad"), PairwiseExample("R", "fine", "poor")]
    result = alignkit.train(model=MODEL, train_dataset=records, args={"objective": "ipo", "max_steps": 1,
                                                                      "batch_size": 2, "progress": False},
                            output_dir=str(tmp_path / "records"))
    assert result.steps == 1


def test_api_generate_and_evaluate_take_objects(tmp_path: Path) -> None:
    import alignkit
    from alignkit.models import load_model

    model, tokenizer = load_model(MODEL)
    rows = alignkit.generate(model, ["Say hi.", "Say bye."], tokenizer=tokenizer, max_new_tokens=2)
    assert [r["id"] for r in rows] == [0, 1] and all(isinstance(r["completion"], str) for r in rows)
    head = alignkit.evaluate(model=model, tokenizer=tokenizer, prompts=["Say hi.", "Say bye."], reward="length:1:100",
                             max_new_tokens=2, output_dir=str(tmp_path / "ev"), n_resamples=10)
    assert head["n_prompts"] == 2 and (tmp_path / "ev" / "prompts.jsonl").exists()


# ---------------------------------------------------------------------------------------------------------- 10


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- quickstart:python -->")
    block = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    # the embedded model would take minutes on CPU; the tiny one runs the same code path
    code = block.replace('"smollm2-135m-instruct"', f'"{MODEL}"')
    exec(compile(code + "\nassert result.steps > 0\n", "README quickstart", "exec"), {})


# ---------------------------------------------------------------------------------------------------------- 11


def test_tracker_is_checked_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alignkit.models

    monkeypatch.setattr("accelerate.utils.imports.is_wandb_available", lambda: False)
    monkeypatch.setattr(alignkit.models, "load_model", lambda *a, **k: pytest.fail("model loaded first"))
    data = write_jsonl(tmp_path / "p.jsonl", EXPLICIT)
    with pytest.raises(ConfigError, match=r"wandb is not installed; pip install wandb"):
        alignkit.train(model=MODEL, train_dataset=str(data), report_to="wandb", output_dir=str(tmp_path / "r"))


def test_tensorboard_through_accelerate_writes_event_files_offline(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    data = write_jsonl(tmp_path / "p.jsonl", EXPLICIT)
    run = tmp_path / "tb"
    assert main(["train", "--model", MODEL, "--data", str(data), "--output-dir", str(run), "--max-steps", "1",
                 "--report-to", "tensorboard", "--set", "batch_size=2", *FAST]) == 0
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = set()
    for e in events:
        acc = EventAccumulator(str(e))
        acc.Reload()
        scalars |= set(acc.Tags().get("scalars", []))
    assert "train/loss" in scalars


# ---------------------------------------------------------------------------------------------------------- 12


def test_lora_final_names_its_base_and_loads_with_peft_and_eval(tmp_path: Path) -> None:
    from peft import PeftModel

    from alignkit.models import load_model

    local_base = tmp_path / "base"
    model, tok = load_model(MODEL)
    model.save_pretrained(local_base)
    tok.save_pretrained(local_base)
    data = write_jsonl(tmp_path / "p.jsonl", EXPLICIT)
    run = tmp_path / "run"
    assert main(["train", "--model", str(local_base), "--data", str(data), "--output-dir", str(run),
                 "--max-steps", "1", "--use-peft", "--lora-r", "2", "--set", "batch_size=2", *FAST]) == 0
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(local_base.resolve())
    from transformers import AutoModelForCausalLM

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(adapter["base_model_name_or_path"]),
                                           str(run / "final"))
    assert peft_model.peft_config["default"].r == 2
    assert main(["eval", "--model", str(run / "final"), "--prompts", str(write_jsonl(
        tmp_path / "q.jsonl", [{"prompt": "Say hi."}])), "--reward", "length:1:100", "--set", "max_new_tokens=2",
        "--set", "n_resamples=10", "--output-dir", str(tmp_path / "ev")]) == 0
    # a tiny-random base is rebuilt from alignkit.json's spec and seed
    run2 = tmp_path / "run2"
    assert main(["train", "--model", MODEL, "--data", str(data), "--output-dir", str(run2), "--max-steps", "1",
                 "--use-peft", "--lora-r", "2", "--set", "batch_size=2", *FAST]) == 0
    loaded, _ = load_model(str(run2 / "final"))
    assert hasattr(loaded, "peft_config")


def test_push_to_hub_prepares_the_card_and_fails_offline_in_one_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    data = write_jsonl(tmp_path / "p.jsonl", EXPLICIT)
    run = tmp_path / "run"
    rc = main(["train", "--model", MODEL, "--data", str(data), "--output-dir", str(run), "--max-steps", "1",
               "--push-to-hub", "--hub-model-id", "me/tiny-dpo", "--set", "batch_size=2", *FAST])
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: push_to_hub me/tiny-dpo:")
    assert "saved in" in err[0] and "alignkit export" in err[0] and "Traceback" not in stderr
    card = (run / "final" / "README.md").read_text()
    assert "library_name: transformers" in card and "- alignkit" in card and "me/tiny-dpo" in card
    assert (run / "final" / "model.safetensors").exists()  # the upload folder is complete


# ---------------------------------------------------------------------------------------------------------- 13


def test_pyproject_declares_the_extras() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"vllm", "deepspeed", "tracking", "test"} <= set(extras)
    assert any(d.startswith("tensorboard") for d in extras["tracking"])
    assert project["scripts"]["alignkit"] == "alignkit.cli:main"


def test_wheel_installs_without_the_makefile(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), "-q"], check=True, timeout=600)
    [wheel] = list(wheels.glob("alignkit-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}  # no PYTHONPATH to the source tree
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=600,
                   env=env, cwd=tmp_path)
    # the new venv sees the test venv's packages (torch etc.) through a path entry, which does not run that
    # venv's .pth files, so its editable alignkit stays out: alignkit comes only from the wheel (installed first:
    # pip would take the test venv's alignkit metadata for an installed alignkit)
    import sysconfig

    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(py), "-c", "import alignkit, alignkit.cli; print(alignkit.__file__)"], check=True,
                           capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    assert str(venv) in where
    out = subprocess.run([str(venv / "bin" / "alignkit"), "--version"], check=True, capture_output=True, text=True,
                         env=env, cwd=tmp_path).stdout
    assert out.startswith("alignkit ")
    suite = subprocess.run([str(py), "-c", "from alignkit.data.io import read_records; "
                            "print(len(read_records('suite:test')))"], check=True, capture_output=True, text=True,
                           env=env, cwd=tmp_path).stdout
    assert suite.strip() == "400"  # package data (the suite) is in the wheel


# ---------------------------------------------------------------------------------------------------------- 14


def test_accelerate_configs_parse() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    folder = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
    names = {p.name for p in folder.glob("*.yaml")}
    assert {"cpu_ddp.yaml", "multi_gpu.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"} <= names
    for name in names:
        cfg = load_config_from_file(str(folder / name))
        assert cfg.num_processes >= 1, name
    assert load_config_from_file(str(folder / "fsdp.yaml")).distributed_type.value == "FSDP"
    assert load_config_from_file(str(folder / "deepspeed_zero2.yaml")).deepspeed_config["zero_stage"] == 2
