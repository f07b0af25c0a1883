"""The top-level, Trainer-shaped Python API: `alignkit.train(...)`, `alignkit.evaluate(...)`, `alignkit.generate(...)`
(issue #16.9). Each takes objects in memory as TRL's trainers do (a loaded model and its tokenizer, or a model
spec / path; a `datasets.Dataset`, a list of rows or records, or a path / named source) plus settings under
alignkit's or TRL's names, and calls the same code as the CLI.

    import alignkit
    result = alignkit.train(model="smollm2-135m-instruct", train_dataset=dataset, objective="dpo",
                            learning_rate=5e-7, output_dir="runs/dpo")
    alignkit.evaluate(model=result.final_dir, prompts="suite:test", reward="csr", output_dir="runs/dpo-eval")

`alignkit.train` and `alignkit.evaluate` are also the subpackages `alignkit.train.*` / `alignkit.evaluate.*`;
calling the package runs these functions (see `alignkit/__init__.py`), so `import alignkit.train.engine` keeps
working. This module sits at the top of the layers (it calls the engine, online RL, decoding and evaluation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from alignkit.config import from_dict, resolve_aliases, to_dict
from alignkit.errors import ConfigError

IN_MEMORY_MODEL = "<in-memory model>"
IN_MEMORY_DATA = "<in-memory dataset>"


def _settings(cls: type, config: Any, settings: dict[str, Any]) -> Any:
    """`cls` from `config` (an instance, a mapping with alignkit or TRL names, or a YAML path) with `settings`
    (keyword arguments, same names) on top."""
    tree: dict[str, Any]
    if config is None:
        tree = {}
    elif isinstance(config, cls):
        tree = to_dict(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):  # e.g. a TRL-like args object
        tree = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, dict):
        tree = dict(config)
    elif isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        tree = yaml.safe_load(path.read_text()) or {}
    else:
        raise ConfigError(f"config must be a {cls.__name__}, a mapping or a YAML path, got {type(config).__name__}")
    tree = resolve_aliases(cls, tree, "config")
    tree.update(resolve_aliases(cls, {k: v for k, v in settings.items() if v is not None}, "keyword arguments"))
    return from_dict(cls, tree)


def _is_model_object(model: Any) -> bool:
    return model is not None and not isinstance(model, (str, Path))


def _model_label(model: Any) -> str:
    """A loaded model's directory when it has one (so config.yaml, export and adapters can name it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = getattr(getattr(base, "config", None), "_name_or_path", "") or ""
    return name if name and Path(name).is_dir() else IN_MEMORY_MODEL


def _records(data: Any, kind: str, cfg: Any, notes: list[str], split: str | None = None) -> list[Any]:
    """Records of `kind` from a path / named source / `datasets.Dataset` / list of rows or records."""
    from alignkit.data.io import read_records
    from alignkit.data.records import DATA_KINDS

    record_types = tuple(DATA_KINDS.values())
    if isinstance(data, list) and data and all(isinstance(r, record_types) for r in data):
        return list(data)
    result = read_records(data, kind, on_bad_record=cfg.on_bad_record, split=split)
    if result.notes or result.skipped:
        notes.append(result.summary())
    return list(result.records)


def train(model: Any = None, tokenizer: Any = None, train_dataset: Any = None, eval_dataset: Any = None,
          config: Any = None, *, args: Any = None, processing_class: Any = None, reward: Any = None,
          log: Any = None, **settings: Any) -> Any:
    """Train like `alignkit train`, TRL-trainer shaped.

    model: a spec (`smollm2-135m-instruct`, `tiny-random`, a local directory or cached hub id) or a loaded
        `transformers` / PEFT model (then `tokenizer` is required).
    tokenizer (TRL: `processing_class`): the model's tokenizer; loaded with the model when `model` is a spec.
    train_dataset, eval_dataset: a `datasets.Dataset`, a list of rows (TRL column names) or alignkit records,
        or anything `read_records` reads (a file, a datasets folder, `suite:train`, a cached hub id).
    config (TRL: `args`): a `TrainConfig`, a mapping or a YAML path; alignkit and TRL key names both work.
    **settings: config keys on top (`objective="dpo"`, `learning_rate=1e-6`, `lora={"r": 8}`, `max_steps=10`).
    reward: the reward for online objectives (grpo, rloo): a `Reward` or a spec string.

    Returns the engine's `TrainResult` (online RL: `OnlineResult`).
    """
    from alignkit.train.config import TrainConfig

    if args is not None and config is not None:
        raise ConfigError("give config= or args= (TRL's name), not both")
    if processing_class is not None and tokenizer is not None:
        raise ConfigError("give tokenizer= or processing_class= (TRL's name), not both")
    tokenizer = tokenizer if tokenizer is not None else processing_class
    in_memory_model = _is_model_object(model)
    if not in_memory_model and model is not None:
        settings["model"] = str(model)
    data_is_label = train_dataset is not None and not isinstance(train_dataset, (str, Path))
    if train_dataset is not None:
        settings["data"] = IN_MEMORY_DATA if data_is_label else str(train_dataset)
    cfg = _settings(TrainConfig, args if args is not None else config, settings)
    if in_memory_model:
        cfg.model = _model_label(model)
    cfg.validate()
    if cfg.report_to:
        from alignkit.train.trackers import check_trackers

        check_trackers(cfg.report_to)
    from alignkit.rl.config import ONLINE_OBJECTIVES

    notes: list[str] = []
    if cfg.objective in ONLINE_OBJECTIVES:
        from alignkit.rl.data import load_prompts
        from alignkit.rl.trainer import run_online

        prompts = (_records(train_dataset, "prompt", cfg, notes) if data_is_label
                   else load_prompts(cfg.data, on_bad_record=cfg.on_bad_record))
        if isinstance(reward, str):
            cfg.objective_args = {**cfg.objective_args, "reward": reward}
            reward = None
        if in_memory_model and cfg.lora.enabled and not hasattr(model, "peft_config"):
            from alignkit.models import attach_lora

            model = attach_lora(model, cfg.lora)
        return run_online(cfg, reward=reward, prompts=prompts, model=model if in_memory_model else None,
                          tokenizer=tokenizer if in_memory_model else None, **({"log": log} if log else {}))
    from alignkit.objectives.base import get_objective
    from alignkit.train.engine import train as train_engine

    kind = get_objective(cfg.objective).data_kind
    records = _records(train_dataset, kind, cfg, notes, cfg.data_split) if data_is_label else None
    eval_records = None
    if eval_dataset is not None:
        eval_records = _records(eval_dataset, kind, cfg, notes, cfg.eval_data_split)
        if isinstance(eval_dataset, (str, Path)):
            cfg.eval_data = str(eval_dataset)
    say = log or print
    for note in notes:
        say(note)
    return train_engine(cfg, records=records, eval_records=eval_records, log=log,
                        model=model if in_memory_model else None, tokenizer=tokenizer if in_memory_model else None)


def _write_prompts(prompts: Any, out_dir: Path) -> str:
    """In-memory prompts (strings, chat lists, rows, a `datasets.Dataset`) written to OUT/prompts.jsonl, so the
    evaluation reads them as it reads any prompt file and the run directory records what was evaluated."""
    from alignkit.data.io import read_records, write_records

    rows = [{"prompt": p} if isinstance(p, (str, list)) and not isinstance(p, dict) else p for p in prompts] \
        if isinstance(prompts, list) else prompts
    records = read_records(rows, "prompt").records
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "prompts.jsonl"
    write_records(path, records)
    return str(path)


def evaluate(model: Any = None, tokenizer: Any = None, prompts: Any = "suite:test", config: Any = None, *,
             processing_class: Any = None, **settings: Any) -> dict[str, Any]:
    """Evaluate like `alignkit eval`: generate on `prompts` (a path, `suite:test`, a cached hub id, a list of
    prompts/rows or a `datasets.Dataset`), score with `reward` (default csr), write `output_dir`; returns
    eval.json's contents. `model`: a spec, a run's `final/` or a loaded model (with `tokenizer`); or
    `samples="RUN/samples.jsonl"` to score existing outputs. Other keys: `EvalConfig`'s."""
    from alignkit.evaluate.evaluation import EvalConfig
    from alignkit.evaluate.evaluation import evaluate as run_eval
    from alignkit.models import finish_tokenizer

    tokenizer = tokenizer if tokenizer is not None else processing_class
    in_memory_model = _is_model_object(model)
    if model is not None and not in_memory_model:
        settings["model"] = str(model)
    elif in_memory_model:
        settings["model"] = _model_label(model)
        if tokenizer is None:
            raise ConfigError("a model object needs its tokenizer: alignkit.evaluate(model=..., tokenizer=...)")
    elif settings.get("samples"):
        settings["model"] = None
    in_memory_prompts = not isinstance(prompts, (str, Path))
    settings["prompts"] = "<in-memory prompts>" if in_memory_prompts else str(prompts)
    cfg = _settings(EvalConfig, config, settings)
    if in_memory_prompts:
        cfg.prompts = _write_prompts(prompts, Path(cfg.output_dir))
    return run_eval(cfg, model if in_memory_model else None,
                    finish_tokenizer(tokenizer, cfg.chat_template) if in_memory_model else None)


def generate(model: Any, prompts: Any, *, tokenizer: Any = None, strategy: str = "sample", reward: Any = None,
             n: int | None = None, max_new_tokens: int = 128, temperature: float | None = None, seed: int = 0,
             raw: bool = False, template: str = "auto", chat_template: str | None = None, batch_size: int = 8,
             **options: Any) -> list[dict[str, Any]]:
    """Generate like `alignkit generate`, in memory: `prompts` is one prompt, a list of prompts (strings or chat
    lists), rows, a `datasets.Dataset` or any prompt source; returns one dict per prompt (`completion`,
    `candidates`, `scores`, `compute`, `info`, `id`). `strategy`: sample, bon, qalign, ... with its options.
    `template` / `chat_template` (a Jinja file or text) as in `alignkit.train` (`--template`, `--chat-template`)."""
    from alignkit.data.build.common import load_prompts
    from alignkit.data.io import read_records
    from alignkit.decode.hf import HFSampler
    from alignkit.decode.strategies import run_strategy
    from alignkit.models import finish_tokenizer, load_model

    text = str(prompts) if isinstance(prompts, (str, Path)) else ""
    # one string is a source when it is a path, suite:SPLIT or a hub id (owner/name, no spaces); else a prompt
    if text and (Path(text).exists() or text.startswith("suite:") or ("/" in text and " " not in text)):
        records = load_prompts(str(prompts))
    else:
        items = [prompts] if isinstance(prompts, str) or (isinstance(prompts, list) and prompts
                                                          and isinstance(prompts[0], dict)
                                                          and "role" in prompts[0]) else prompts
        rows = [{"prompt": p} if isinstance(p, (str, list)) else p for p in items] if isinstance(items, list) \
            else items
        records = read_records(rows, "prompt").records
    if _is_model_object(model):
        if tokenizer is None:
            raise ConfigError("a model object needs its tokenizer: alignkit.generate(model, prompts, tokenizer=...)")
        tokenizer = finish_tokenizer(tokenizer, chat_template)
    else:
        model, tokenizer = load_model(str(model), chat_template=chat_template)
    if isinstance(reward, str):
        from alignkit.rewards.registry import load_reward

        reward = load_reward(reward)
    sampler = HFSampler(model, tokenizer, raw=raw, template=template)
    if n is not None:
        options["steps" if strategy == "qalign" else "n"] = n
    options.setdefault("max_tokens" if strategy == "nudge" else "max_new_tokens", max_new_tokens)
    if temperature is not None:
        options.setdefault("temperature", temperature)
    if strategy in ("sample", "bon", "qalign", "steer", "urial"):
        options.setdefault("seed", seed)
    out: list[dict[str, Any]] = []
    for start in range(0, len(records), max(1, batch_size)):
        batch = records[start:start + max(1, batch_size)]
        contexts = [{k: v for k, v in (("constraints", r.constraints), ("references", r.references)) if v}
                    for r in batch]
        results = run_strategy(strategy, sampler, [r.prompt for r in batch], reward=reward, contexts=contexts,
                               **options)
        for k, result in enumerate(results):
            out.append({"id": batch[k].metadata.get("id", start + k), **result.as_dict()})
    return out
