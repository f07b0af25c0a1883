"""`alignkit models prepare|info`: get the embedded model ready offline, and describe any model spec."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alignkit.cli import add_command
from alignkit.errors import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    models = add_command(sub, "models", "Prepare and inspect models.", """\
  alignkit models prepare smollm2-135m-instruct
  alignkit models info tiny-random
""")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION")
    models.set_defaults(func=lambda args: models.print_help() or 0)

    p = add_command(actions, "prepare", "Make a model usable offline and print its local directory.", """\
  alignkit models prepare smollm2-135m-instruct          # converts the bundled GGUF once, prints the cache path
  alignkit models prepare smollm2-135m-instruct --force  # convert again
  alignkit models prepare ./my-model                     # checks a local HF directory, prints its path
""")
    p.add_argument("model", metavar="MODEL", nargs="?", default="smollm2-135m-instruct",
                   help="smollm2-135m-instruct (default), tiny-random, a local directory or a cached hub id")
    p.add_argument("--force", action="store_true", help="redo the embedded model's conversion; the new directory replaces the old one "
                   "atomically, so runs loading the model meanwhile are unaffected")
    p.set_defaults(func=cmd_prepare)

    p = add_command(actions, "info", "Parameters, layers, vocabulary and chat template of a model.", """\
  alignkit models info smollm2-135m-instruct
  alignkit models info tiny-random:4:128 --json
  alignkit models info runs/dpo/final
""")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_info)


def prepare(spec: str, force: bool = False) -> Path:
    """The local directory holding `spec` (the embedded model is converted on first use)."""
    from alignkit.models import EMBEDDED, TINY, prepare_embedded, resolve_local

    if spec == EMBEDDED:
        return prepare_embedded(force=force)
    if spec.startswith(TINY):
        # tiny-random is built in memory from a seed; only its tokenizer (the embedded one) lives on disk.
        return prepare_embedded(force=force)
    return resolve_local(spec)


def model_info(spec: str) -> dict[str, Any]:
    """Describe a model without loading weights where possible (meta device for plain HF directories)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from alignkit.models import TINY, load_model, load_tokenizer

    path = prepare(spec)
    if spec.startswith(TINY) or (path / "adapter_config.json").exists():
        model, tokenizer = load_model(spec)
        config = model.config
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        source = f"in memory (tokenizer from {path})" if spec.startswith(TINY) else str(path)
    else:
        tokenizer = load_tokenizer(spec)
        try:
            config = AutoConfig.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the config of {path}: {e}") from None
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        params = trainable = sum(p.numel() for p in model.parameters())
        source = str(path)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {
        "model": spec,
        "path": source,
        "architecture": (config.architectures or [type(model).__name__])[0],
        "parameters": params,
        "trainable_parameters": trainable,
        "layers": getattr(text_config, "num_hidden_layers", None),
        "hidden_size": getattr(text_config, "hidden_size", None),
        "attention_heads": getattr(text_config, "num_attention_heads", None),
        "max_positions": getattr(text_config, "max_position_embeddings", None),
        "vocab_size": getattr(text_config, "vocab_size", None),
        "tokenizer_size": len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "dtype": str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)),
    }


def cmd_prepare(args: argparse.Namespace) -> int:
    path = prepare(args.model, force=args.force)
    if args.model.startswith("tiny-random"):
        print("tiny-random is built in memory from a seed; its tokenizer is the embedded model's:", file=sys.stderr)
    print(path)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
            value = f"{value:,}"
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0
