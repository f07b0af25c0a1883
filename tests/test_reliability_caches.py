"""Reliability (issue #14): the reference/teacher caches prove their integrity, and `models prepare --force`
replaces the embedded model's directory atomically, so a concurrent reader never sees it half there."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import alignkit.train.reference as reference
from alignkit.data.io import read_records, sample_path
from alignkit.models import load_model
from alignkit.train.batching import tokenize_records
from alignkit.train.logps import CompletionLogProbs
from alignkit.train.reference import cached_tensors, load_or_compute, reference_cache_path


def flip_bytes(path: Path, n: int = 8) -> None:
    """Invert the last `n` bytes: they lie in the tensor data, so the file still decodes with the same shapes."""
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) - n, len(raw)):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture
def tiny_reference(tmp_path, monkeypatch):
    """A tiny runner, 3 tokenised pairs, a cache under tmp_path, and a counter of real computations."""
    torch.set_num_threads(1)
    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path)
    model, tok = load_model("tiny-random", seed=0)
    data = tokenize_records(list(read_records(sample_path("pairwise"), "pairwise").records)[:3], "pairwise", tok)
    runner = CompletionLogProbs(model)
    calls: list[int] = []
    real = reference.compute_table

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference, "compute_table", counting)
    logs: list[str] = []

    def table(key: str = "k1") -> torch.Tensor:
        return load_or_compute(runner, data, key, int(tok.pad_token_id), 2, "cpu", main=True, log=logs.append)

    return table, calls, logs


def test_reference_cache_with_8_flipped_bytes_is_recomputed_not_reused(tiny_reference):
    table, calls, logs = tiny_reference
    first = table()
    assert len(calls) == 1
    assert torch.equal(table(), first) and len(calls) == 1  # a sound cache is reused

    path = reference_cache_path("k1")
    flip_bytes(path)
    logs.clear()
    again = table()
    assert len(calls) == 2, "a corrupted cache must be recomputed"
    assert torch.equal(again, first)  # the recomputed values, not the corrupted ones
    assert any(m.startswith("warning:") and "SHA-256" in m for m in logs)
    logs.clear()
    assert torch.equal(table(), first) and len(calls) == 2  # the rewritten file is sound again
    assert any("key and SHA-256 verified" in m for m in logs)


def test_reference_cache_computed_for_another_key_is_recomputed(tiny_reference):
    table, calls, logs = tiny_reference
    table("k1")
    # Same data and shapes, but a file copied (or renamed) under another key is not this key's cache.
    shutil.copy(reference_cache_path("k1"), reference_cache_path("k2"))
    table("k2")
    assert len(calls) == 2
    assert any("computed for key 'k1', not 'k2'" in m for m in logs)


def test_cache_without_checksum_is_recomputed(tmp_path):
    """A file in the old format (key only, no checksum) cannot prove it is intact, so it is not trusted."""
    path = tmp_path / "old.safetensors"
    save_file({"reference": torch.zeros(3, 2)}, str(path), metadata={"key": "k"})
    logs: list[str] = []
    fresh = {"reference": torch.ones(3, 2)}
    got = cached_tensors(path, "k", "reference log-probs", lambda: fresh, lambda t: t["reference"].shape == (3, 2),
                         main=True, log=logs.append)
    assert torch.equal(got["reference"], torch.ones(3, 2))
    assert any("has no checksum" in m for m in logs)


def test_teacher_cache_shares_the_checksum(tmp_path):
    """The teacher top-k cache goes through the same helper: corrupt ids are caught, not gathered."""
    path = tmp_path / "teacher.safetensors"
    computed: list[int] = []

    def compute() -> dict[str, torch.Tensor]:
        computed.append(1)
        return {"ids": torch.arange(12, dtype=torch.int32).reshape(3, 4), "counts": torch.tensor([4, 4, 4])}

    def valid(t: dict[str, torch.Tensor]) -> bool:
        return tuple(t["counts"].shape) == (3,)

    first = cached_tensors(path, "tk", "teacher top-k", compute, valid, main=True, log=lambda _: None)
    cached_tensors(path, "tk", "teacher top-k", compute, valid, main=True, log=lambda _: None)
    assert len(computed) == 1
    flip_bytes(path)
    again = cached_tensors(path, "tk", "teacher top-k", compute, valid, main=True, log=lambda _: None)
    assert len(computed) == 2 and torch.equal(again["ids"], first["ids"])


def test_cache_header_records_key_and_sha256(tiny_reference):
    table, _, _ = tiny_reference
    table("k1")
    raw = reference_cache_path("k1").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    meta = header["__metadata__"]
    assert meta["key"] == "k1" and len(meta["sha256"]) == 64


# --- `models prepare --force`: an atomic replace under concurrent readers -------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny HF model to stand in for the GGUF conversion (built before any test redirects the cache)."""
    model, tok = load_model("tiny-random", seed=0)
    out = tmp_path_factory.mktemp("tiny-src")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def read_whole_model(path: Path) -> int:
    """What a loading process reads: config, tokenizer config and every weight; raises if any is missing/torn."""
    from safetensors.torch import load_file

    config = json.loads((path / "config.json").read_text())
    json.loads((path / "tokenizer_config.json").read_text())
    weights = load_file(str(path / "model.safetensors"))
    assert config["num_hidden_layers"] == 2 and weights
    return len(weights)


def test_models_prepare_force_never_breaks_a_concurrent_reader(tmp_path, monkeypatch, tiny_model_dir):
    import alignkit.models as models
    from alignkit.cli import main

    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))

    def fake_convert(out: Path) -> None:  # the GGUF conversion takes minutes; copying a tiny model is enough
        shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    target = models.prepare_embedded()
    assert target == tmp_path / "models" / models.EMBEDDED and read_whole_model(target)

    errors: list[BaseException] = []
    loads = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                read_whole_model(target)
                loads[0] += 1
            except BaseException as e:  # noqa: BLE001 - every failure counts
                errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(25):
            assert main(["models", "prepare", "smollm2-135m-instruct", "--force"]) == 0
    finally:
        stop.set()
        thread.join()
    assert not errors, f"{len(errors)} of {loads[0] + len(errors)} concurrent loads failed: {errors[0]!r}"
    assert loads[0] > 0
    # Only the current version is left behind: no temp builds, no old versions.
    leftovers = sorted(p.name for p in target.parent.iterdir() if p.name not in (target.name, f".{target.name}.lock"))
    assert leftovers == [] and not target.is_symlink()


def test_replace_dir_atomically_replaces_an_old_style_directory(tmp_path):
    from alignkit.models import replace_dir_atomically

    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text('{"v": 1}')
    new = tmp_path / "build"
    new.mkdir()
    (new / "config.json").write_text('{"v": 2}')
    replace_dir_atomically(new, target)
    assert json.loads((target / "config.json").read_text()) == {"v": 2}
    assert target.is_dir() and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # old one removed


def test_prepare_removes_leftovers_of_a_killed_writer(tmp_path, tiny_model_dir):
    from alignkit.models import prepare_dir

    target = tmp_path / "m"
    (tmp_path / ".m.tmp-dead").mkdir()  # a build killed half-way
    (tmp_path / ".m.v-dead").mkdir()  # a version renamed but never linked
    prepare_dir(target, lambda out: shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True))
    assert read_whole_model(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def test_prepare_without_config_json_is_an_error_and_keeps_the_old_model(tmp_path, tiny_model_dir):
    from alignkit.errors import ModelError
    from alignkit.models import prepare_dir

    target = tmp_path / "m"
    prepare_dir(target, lambda out: shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True))
    with pytest.raises(ModelError, match="wrote no config.json"):
        prepare_dir(target, lambda out: None, force=True)
    assert read_whole_model(target)
