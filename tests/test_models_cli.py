"""`alignkit models prepare|info`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.models import load_model, merge_and_save


def test_prepare_prints_the_cached_directory(capsys) -> None:
    assert main(["models", "prepare", "smollm2-135m-instruct"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()


def test_info_tiny_random(capsys) -> None:
    assert main(["models", "info", "tiny-random:3:32", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["layers"], info["hidden_size"], info["vocab_size"]) == (3, 32, 49152)
    assert info["chat_template"] is True and info["parameters"] > 0


def test_info_local_directory_counts_parameters_without_loading(tmp_path: Path, capsys) -> None:
    model, tok = load_model("tiny-random")
    merge_and_save(model, tok, tmp_path / "m")
    assert main(["models", "info", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["layers"] == 2 and info["path"] == str(tmp_path / "m")


def test_info_unknown_model_is_one_clear_error(capsys) -> None:
    assert main(["models", "info", "./no/such/model"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["prepare", "info"])
def test_help_has_examples(action: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["models", action, "--help"])
    assert "examples:" in capsys.readouterr().out
