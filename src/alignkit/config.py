"""Typed dataclass configs loaded from YAML with `--set a.b=value` overrides.

Every command's configuration is a (possibly nested) dataclass. `load_config(cls, path, overrides)` reads YAML,
applies dotted overrides (values parsed as YAML scalars, so `--set lr=1e-5` is a float and `--set lora.r=8` an
int), and checks every key and type, so a typo fails loudly instead of being ignored.

Other tools' names (issue #16.6): a dataclass may declare `CONFIG_ALIASES`, a class attribute mapping a foreign
key (TRL's `learning_rate`) to its own dotted key (`lr`), or to a function of the value returning
`{dotted key: value}` (`bf16: true` -> `{"mixed_precision": "bf16"}`). Aliases are resolved in each layer (the
YAML file, the command-line flags, each `--set`) before the layers merge, so the last layer wins whichever name
it uses; one layer naming a key twice (`lr` and `learning_rate`) is an error. A dataclass may also declare
`CONFIG_EXTRA = (field, accepts)`: unknown keys for which `accepts(key)` holds go into that dict field (LoRA
passes any `peft.LoraConfig` field through this way). Other unknown keys still fail, listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignkit.errors import ConfigError

T = TypeVar("T")


def parse_override(item: str) -> tuple[str, Any]:
    """Split `a.b=value` into the dotted key and the YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value (e.g. --set lr=1e-5)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


Alias = str | Callable[[Any], dict[str, Any]]


def aliases_of(cls: type) -> dict[str, Any]:
    return dict(getattr(cls, "CONFIG_ALIASES", {}) or {})


def resolve_aliases(cls: type, tree: dict[str, Any], source: str = "") -> dict[str, Any]:
    """`tree` (one layer: a YAML mapping, flags or one override) with `cls`'s foreign key names replaced by its
    own dotted keys; nested dataclass fields resolve their own aliases in `from_dict`."""
    aliases = aliases_of(cls)
    if not aliases or not any(k in aliases for k in tree):
        return tree
    out = {k: v for k, v in tree.items() if k not in aliases}
    named: dict[str, str] = {}
    for key, value in tree.items():
        if key not in aliases:
            continue
        target = aliases[key]
        items = target(value) if callable(target) else {target: value}
        for dotted, v in items.items():
            head = dotted.split(".")[0]
            if _get_dotted(out, dotted) is not _MISSING and _get_dotted(out, dotted) != v:
                by = named.get(dotted, dotted)
                where = f" in {source}" if source else ""
                raise ConfigError(f"both {by!r} and {key!r} set {dotted!r}{where}; give one")
            if head in out and not isinstance(out[head], dict) and "." in dotted:
                out[head] = {}
            _set_dotted(out, dotted, v)
            named[dotted] = key
    return out


_MISSING = object()


def _get_dotted(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}: {value!r} does not match {annotation}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{path}.")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return [_coerce(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = resolve_aliases(cls, dict(data), prefix.rstrip("."))
    unknown = set(data) - names
    extra_field, accepts = getattr(cls, "CONFIG_EXTRA", (None, None))
    if unknown and extra_field is not None:
        passed = {k for k in unknown if accepts(k)}
        if passed:
            extra = dict(data.get(extra_field) or {})
            extra.update({k: data.pop(k) for k in sorted(passed)})
            data[extra_field] = extra
            unknown -= passed
    if unknown:
        foreign = sorted(prefix + a for a in aliases_of(cls))
        also = f"; also accepted (TRL / transformers names): {foreign}" if foreign else ""
        raise ConfigError(
            f"unknown config key(s) {sorted(prefix + u for u in unknown)}; valid keys: {sorted(prefix + n for n in names)}"
            + also)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Load `cls` from optional YAML `path`, then `base` values, then `--set` overrides (last wins)."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        tree = resolve_aliases(cls, loaded, str(p))
    flags: dict[str, Any] = {}
    for k, v in (base or {}).items():
        if v is not None:
            _set_dotted(flags, k, v)
    _merge(tree, resolve_aliases(cls, flags, "the command line"))
    for item in overrides or []:
        k, v = parse_override(item)
        layer: dict[str, Any] = {}
        _set_dotted(layer, k, v)
        _merge(tree, resolve_aliases(cls, layer, f"--set {item}"))
    return from_dict(cls, tree)


def _merge(tree: dict[str, Any], layer: dict[str, Any]) -> None:
    """Merge `layer` into `tree`, mappings key by key (a later `--set lora.r=8` keeps the file's lora.alpha)."""
    for k, v in layer.items():
        if isinstance(v, dict) and isinstance(tree.get(k), dict):
            _merge(tree[k], v)
        else:
            tree[k] = v


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
