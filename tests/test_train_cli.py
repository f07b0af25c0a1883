"""`alignkit train` / `alignkit export` end to end on a tiny model."""

from __future__ import annotations

import json

from transformers import AutoModelForCausalLM

from alignkit.cli import main
from alignkit.train.synthetic import synthetic_pairs


def write_pairs(path, n: int) -> None:
    with path.open("w") as f:
        for p in synthetic_pairs(n):
            f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")


def test_train_checkpoint_resume_export(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, 8)
    run = tmp_path / "runs" / "x"
    common = ["--set", "batch_size=4", "--set", "lr=1e-3", "--set", "save_every=1", "--set", "progress=false",
              "--set", "eval_split=0.25"]
    rc = main(["train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "dpo",
               "--output-dir", str(run), "--set", "max_steps=2", *common])
    assert rc == 0
    out = capsys.readouterr().out
    assert "trained 2 steps (reference: precompute)" in out
    assert (run / "checkpoints" / "step-2" / "COMPLETE").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert any("eval/loss" in r for r in rows) and "rewards/accuracy" in rows[0]
    # Resume reads the run's resolved config.yaml; raising max_steps continues from step 2.
    rc = main(["train", "--output-dir", str(run), "--resume", "--set", "max_steps=3"])
    assert rc == 0
    assert "resumed from" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    rc = main(["export", str(run), str(tmp_path / "exported")])
    assert rc == 0
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "exported"))
    assert model.config.num_hidden_layers == 1


def test_lora_export_merges_adapter(tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, 4)
    run = tmp_path / "lora"
    assert main(["train", "--model", "tiny-random:1:32", "--data", str(data), "--objective", "dpo",
                 "--output-dir", str(run), "--set", "max_steps=1", "--set", "lora.r=4",
                 "--set", "lr=1e-2", "--set", "progress=false"]) == 0
    assert (run / "final" / "adapter_config.json").exists()
    assert main(["export", str(run), str(tmp_path / "merged")]) == 0
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_unknown_key_is_a_clear_error(tmp_path, capsys):
    # (learning_rate is TRL's name for lr and accepted since issue #16.6)
    rc = main(["train", "--model", "tiny-random", "--data", "x.jsonl", "--set", "lerning_rate=1"])
    assert rc == 2
    assert "unknown config key" in capsys.readouterr().err
