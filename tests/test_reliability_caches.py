"""Reliability (issue #14): the reference/teacher caches prove their integrity, and `models prepare --force`
replaces the embedded model's directory atomically, so a concurrent reader never sees it half there."""

from __future__ import annotations

import json
import shutil
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
