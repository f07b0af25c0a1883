"""One atomic directory swap (`alignkit.rundir.replace_dir`) for every directory the library replaces: `target` is
never missing, and the old contents go only once the new ones are in place (issues #14.7, #14.14)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from alignkit.models import load_model, merge_and_save, replace_dir_atomically
from alignkit.rundir import replace_dir


def _dir(path: Path, version: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"v": version}))
    return path


def test_replace_dir_takes_over_a_cache_in_the_earlier_symlink_layout(tmp_path: Path) -> None:
    # `models prepare` used to leave NAME -> .NAME.v-ID; the next swap replaces the link and removes its version.
    _dir(tmp_path / ".m.v-abc", 1)
    os.symlink(".m.v-abc", tmp_path / "m", target_is_directory=True)
    replace_dir(_dir(tmp_path / "build", 2), tmp_path / "m")
    assert not (tmp_path / "m").is_symlink()
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_the_models_swap_is_the_rundir_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, Path]] = []
    monkeypatch.setattr("alignkit.models.replace_dir", lambda new, target: calls.append((new, target)))
    replace_dir_atomically(tmp_path / "a", tmp_path / "b")
    assert calls == [(tmp_path / "a", tmp_path / "b")]


def test_merge_and_save_never_leaves_the_output_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = load_model("tiny-random:1:32", seed=0)
    out = merge_and_save(model, tok, tmp_path / "export")
    (out / "stale.txt").write_text("from the previous export")

    real_rmtree = shutil.rmtree
    seen: list[bool] = []

    def watched_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        real_rmtree(path, *args, **kwargs)
        seen.append((out / "config.json").exists())  # after every deletion, a whole model is at `out`

    monkeypatch.setattr(shutil, "rmtree", watched_rmtree)
    merge_and_save(model, tok, out)
    assert seen and all(seen), seen  # before: `out` was deleted, then the new directory renamed in
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging directory left
