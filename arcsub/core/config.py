"""Configs as dataclasses: load from YAML/JSON, override with `key=value` (dotted for nested), checked loudly.

Unknown keys and values of the wrong type are errors (one line), never silently ignored - nanoGPT's rule.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from arcsub.core.data import ArcDataError

T = TypeVar("T")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check (and gently convert: int -> float, list -> tuple) a value against a field's type annotation."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ArcDataError:
                continue
        raise ArcDataError(f"config: {key}={value!r} is not a {typ}")
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise ArcDataError(f"config: {key}={value!r} must be one of {list(typing.get_args(typ))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ArcDataError(f"config: {key}={value!r} must be a list")
        inner = typing.get_args(typ)
        item_t = inner[0] if inner else Any
        items = [_coerce(v, item_t, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ArcDataError(f"config: {key}={value!r} must be a mapping")
        return dict(value)
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ArcDataError(f"config: {key} must be a mapping of {typ.__name__} fields")
        return from_dict(typ, value, prefix=f"{key}.")
    if typ is Any:
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float) and isinstance(value, str):  # YAML 1.1 reads '3e-3' as a string
        try:
            return typ(value)
        except ValueError:
            raise ArcDataError(f"config: {key}={value!r} must be a {typ.__name__}") from None
    if typ is bool and not isinstance(value, bool):
        raise ArcDataError(f"config: {key}={value!r} must be true or false")
    if typ is int and isinstance(value, bool):
        raise ArcDataError(f"config: {key}={value!r} must be an integer")
    if isinstance(typ, type) and not isinstance(value, typ):
        raise ArcDataError(f"config: {key}={value!r} must be a {typ.__name__}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], d: dict[str, Any], prefix: str = "") -> T:
    """Build a dataclass from a mapping; unknown keys and wrong types raise one-line errors."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ArcDataError(f"config: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in d.items()})


def merge_mapping(cfg: T, raw: dict[str, Any], prefix: str = "") -> T:
    """`cfg` with a (nested) mapping's values set on top: a sub-config keeps every default the mapping leaves
    out, including defaults its parent gave it (a default_factory that differs from the class defaults)."""
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ArcDataError(f"config: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    changes = {}
    for k, v in raw.items():
        sub = getattr(cfg, k)
        if isinstance(v, dict) and dataclasses.is_dataclass(sub) and not isinstance(sub, type):
            changes[k] = merge_mapping(sub, v, f"{prefix}{k}.")
        else:
            changes[k] = _coerce(v, hints[k], prefix + k)
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


ADDED_LATER = "arcsub_added_later"  # field metadata: left out of settings hashes while at its default


def added_field(default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING) -> Any:
    """A field added after runs were named from their settings: at its default it stays out of
    `settings_dict` (and so of settings_hash), so every older config keeps its run name and still matches
    the run directory it wrote."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={ADDED_LATER: True})


def _field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def settings_dict(cfg: Any) -> dict[str, Any]:
    """`to_dict`, less the `added_field`s that hold their defaults (recursively): what names a run."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get(ADDED_LATER) and value == _field_default(f):
            continue
        is_sub = dataclasses.is_dataclass(value) and not isinstance(value, type)
        out[f.name] = settings_dict(value) if is_sub else copy.deepcopy(value)
    return out


def apply_override(cfg: T, item: str) -> T:
    """Apply one `a.b=value` override (value parsed as YAML) to a dataclass, returning a new one."""
    if "=" not in item:
        raise ArcDataError(f"config: override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ArcDataError(f"config: override {key.strip()}: malformed value ({_first_line(e)})") from None
    return _replace_path(cfg, key.strip().split("."), value, key.strip())


def _replace_path(cfg: Any, path: list[str], value: Any, full: str) -> Any:
    names = {f.name for f in dataclasses.fields(cfg)}
    head = path[0]
    if head not in names:
        raise ArcDataError(f"config: unknown key {full} (known here: {', '.join(sorted(names))})")
    if len(path) > 1:
        sub = getattr(cfg, head)
        if not dataclasses.is_dataclass(sub):
            raise ArcDataError(f"config: {full}: {head} has no sub-keys")
        return dataclasses.replace(cfg, **{head: _replace_path(sub, path[1:], value, full)})
    return dataclasses.replace(cfg, **{head: _coerce(value, _hints(type(cfg))[head], full)})


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Defaults, then a YAML/JSON file, then key=value overrides."""
    cfg = cls()
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ArcDataError(f"{p}: config file not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ArcDataError(f"{p}: malformed YAML ({_first_line(e)})") from None
        if not isinstance(raw, dict):
            raise ArcDataError(f"{p}: a config file must be a mapping of keys to values")
        try:
            cfg = merge_mapping(cfg, raw)
        except ArcDataError as e:
            raise ArcDataError(f"{p}: {e}") from None
    for item in overrides:
        cfg = apply_override(cfg, item)
    check_values(cfg)
    return cfg


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


MIN_VALUE = "arcsub_min"  # field metadata: the smallest value a number may take (None: any)
# counts that must be at least 1 wherever they appear (0 or less would silently mean "nothing" or "all");
# every other number in a config must not be negative (there is no "-1 means off" anywhere; 0 may mean "auto",
# as sampling.batch_tokens does)
AT_LEAST_ONE = frozenset(
    {
        "steps", "rows", "seq_len", "max_len", "grad_accum", "save_every", "log_every", "views",
        "score_views", "tasks_per_batch", "chunk", "n", "ns_steps", "max_new_tokens",
        "max_loras", "max_lora_rank", "max_tries",
    }
)  # fmt: skip


def check_values(cfg: Any, prefix: str = "") -> None:
    """Refuse (one line naming the key) numbers out of range, at load time and so before any compute: by a
    field's `arcsub_min` metadata, else at least 1 for the counts in AT_LEAST_ONE, else at least 0."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_values(value, f"{key}.")
            continue
        lo = f.metadata.get(MIN_VALUE, 1 if f.name in AT_LEAST_ONE else 0)
        items = value if isinstance(value, list | tuple) else [value]
        for v in items:
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if lo is not None and number and not v >= lo:  # `not >=` also refuses NaN
                raise ArcDataError(f"config: {key}={value!r} must be at least {lo}")


def settings_hash(cfg: Any, n: int = 8) -> str:
    """A short stable hash of a config (dataclass or mapping), for run names that never collide."""
    d = cfg if isinstance(cfg, dict) else settings_dict(cfg)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config FILE plus key=value overrides, which may also follow the options."""
    p.add_argument("--config", metavar="FILE", help="YAML/JSON config (defaults otherwise)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=200 lora.r=16"
    )
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = parse(args, namespace)
        trailing = [a for a in extra if "=" in a and not a.startswith("-")]
        if trailing:
            ns.overrides = [*(getattr(ns, "overrides", None) or []), *trailing]
        return ns, [a for a in extra if a not in trailing]

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]
