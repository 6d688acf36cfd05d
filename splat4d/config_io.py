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

from splat4d.errors import UserError


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


class ConfigError(UserError):
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


def _check_primitive(cls: Any, value: Any, where: str) -> Any:
    """`value` (parsed from YAML) as type `cls` where `cls` is a plain bool, int, float or str."""
    if cls is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if cls is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if cls is float:
        if isinstance(value, str):  # YAML 1.1 reads 4e-4 (no dot) as text
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if cls is str and not isinstance(value, str):
        return str(value)
    return value


def _parse_value(cls: Any, text: str, where: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else None
    members = typing.get_args(cls) if typing.get_origin(cls) in (typing.Union, types.UnionType) else (cls,)
    if value is None:
        if type(None) in members:
            return None
        raise ConfigError(f"{where}: a value is required")
    plain = [m for m in members if m in (bool, int, float, str)]
    errors = []
    for member in plain:
        try:
            return _check_primitive(member, value, where)
        except ConfigError as exc:
            errors.append(exc)
    if plain and len(plain) == len([m for m in members if m is not type(None)]):
        raise errors[0]
    if any(dataclasses.is_dataclass(m) for m in members):
        raise ConfigError(f"{where}: is a group of settings; set one of its fields ({where}.NAME=VALUE)")
    for member in members:
        args = typing.get_args(member)
        if typing.get_origin(member) is tuple and isinstance(value, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_check_primitive(args[0], v, where) for v in value)
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_check_primitive(a, v, where) for a, v in zip(args, value, strict=True))
    return from_dict(cls, value, where)


def with_override(cfg: Any, assignment: str) -> Any:
    """`cfg` (a dataclass config) with one field replaced, from a command-line `dotted.name=value` (the value
    read as YAML: 0.3, true, null, [1, 2], text), e.g. `co_reg.pseudo_weight=2` or `init.random_points=5000`.

    Raises:
        ConfigError: one line naming the setting, when the name is unknown (listing the valid ones), the value
            has the wrong type, or the name is a group of settings rather than one.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected NAME=VALUE, e.g. co_reg.pseudo_weight=2")
    name, text = assignment.split("=", 1)
    path = name.strip().replace("-", "_").split(".")

    def replace(obj: Any, keys: list[str], where: str) -> Any:
        fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
        key = keys[0]
        here = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"--set {here}: unknown setting; {type(obj).__name__} has {', '.join(fields)}")
        current = getattr(obj, key)
        if len(keys) > 1:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"--set {here}: is a single setting, not a group")
            return dataclasses.replace(obj, **{key: replace(current, keys[1:], here)})
        hint = typing.get_type_hints(type(obj))[key]
        return dataclasses.replace(obj, **{key: _parse_value(hint, text, f"--set {here}")})

    return replace(cfg, path, "")
