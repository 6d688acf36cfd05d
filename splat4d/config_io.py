"""Dataclass configs to and from plain dicts (for `config.yaml`), so a scene folder records how it was made and
`splat4d eval|view|export` can rebuild the same pipeline.

Every dataclass is written with a `_type` key (its class name), which is how a field typed as a union of
dataclasses (e.g. the densification strategy) is read back.
"""

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"_type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


class ConfigError(ValueError):
    """A stored config does not match the code's config classes."""


def from_dict(cls: Any, data: Any, where: str = "config") -> Any:
    """Build an instance of type `cls` (a dataclass, union, Path, tuple, primitive...) from `to_dict` output."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(cls)
        if data is None and type(None) in members:
            return None
        if isinstance(data, dict) and "_type" in data:
            for member in members:
                if dataclasses.is_dataclass(member) and member.__name__ == data["_type"]:
                    return from_dict(member, data, where)
            raise ConfigError(f"{where}: unknown type {data['_type']!r}")
        for member in members:
            if member is not type(None):
                try:
                    return from_dict(member, data, where)
                except (ConfigError, TypeError, ValueError):
                    continue
        raise ConfigError(f"{where}: {data!r} matches none of {members}")
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping for {cls.__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(data) - names - {"_type"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} for {cls.__name__}")
        kwargs = {k: from_dict(hints[k], v, f"{where}.{k}") for k, v in data.items() if k != "_type"}
        return cls(**kwargs)
    if cls is Path:
        return Path(data)
    if origin is tuple:
        return tuple(data)
    if origin is typing.Literal:
        if data not in typing.get_args(cls):
            raise ConfigError(f"{where}: {data!r} is not one of {typing.get_args(cls)}")
        return data
    if cls is float and isinstance(data, int):
        return float(data)
    return data


def from_yaml(cls: Any, text: str, where: str = "config.yaml") -> Any:
    return from_dict(cls, yaml.safe_load(text), where)
