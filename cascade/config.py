"""Configuration as data: YAML files and config dicts, checked against the constructor they feed.

A model config is a dict ``{"arch": name, **options}``. The options are checked against the signature and type
hints of the function the arch names, so a typo or a wrong type fails on load with a message naming the key,
the file section, and the valid choices, not later inside a network.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or dict that cannot be used; the message says where and why."""


MAX_CONFIG_BYTES = 1 << 20  # recipes and pipeline files are a few kB


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without aliases (``*name``): nothing in cascade's configs needs them, and nested aliases
    expand exponentially (the "billion laughs" file that exhausts memory)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a config file")
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8 YAML) file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` as the type ``hint`` asks for (YAML lists become tuples), or raise ConfigError."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not {_describe(hint)}")
    if hint is type(None):
        if value is None:
            return None
    elif origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            key_hint, value_hint = typing.get_args(hint) or (Any, Any)
            return {
                _coerce(k, key_hint, where): _coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()
            }
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            args = typing.get_args(hint)
            item = args[0] if args else Any
            return origin(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    elif dataclasses.is_dataclass(hint):  # a nested section, e.g. data.degradation
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return hint(**check_options(hint, value, where))
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)  # PyYAML reads 1e-4 (no dot) as a string, though everyone means the number
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: {value!r} is not {_describe(hint)}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if hint is type(None):
        return "null"
    return f"a {getattr(hint, '__name__', hint)}"


def check_options(fn: Callable, options: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``options`` against ``fn``'s parameters; return them type-coerced, with defaults filled in."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = {k: p for k, p in inspect.signature(target).parameters.items() if k != "self"}
    hints = typing.get_type_hints(target)
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(f"{where}: unknown option {', '.join(unknown)}; valid options: {', '.join(params)}")
    resolved = {}
    for name, p in params.items():
        if name in options:
            value = options[name]
            if dataclasses.is_dataclass(p.default) and isinstance(value, dict):
                # a section overrides its own default's fields (Degradation.second is not a default Round)
                value = {f.name: getattr(p.default, f.name) for f in dataclasses.fields(p.default)} | value
            resolved[name] = _coerce(value, hints.get(name, Any), f"{where}.{name}")
        elif p.default is inspect.Parameter.empty:
            raise ConfigError(f"{where}: missing required option {name!r}")
        else:
            resolved[name] = p.default
    return resolved


def build(table: dict[str, Callable], config: dict[str, Any], where: str):
    """Build ``table[config["arch"]](**options)`` after checking the options; the module gets the resolved
    config as ``arch_config`` (as timm models carry ``pretrained_cfg``), which is what a saved model records."""
    if not isinstance(config, dict) or "arch" not in config:
        raise ConfigError(f"{where}: needs an 'arch' key, one of: {', '.join(table)}")
    options = dict(config)
    arch = options.pop("arch")
    if arch not in table:
        raise ConfigError(f"{where}: unknown arch {arch!r}; choose one of: {', '.join(table)}")
    resolved = check_options(table[arch], options, f"{where} ({arch})")
    try:
        model = table[arch](**resolved)
    except ValueError as e:
        raise ConfigError(f"{where} ({arch}): {e}") from None
    model.arch_config = {"arch": arch, **resolved}
    return model


def plain(value: Any) -> Any:
    """Tuples to lists, so that the YAML stays plain (safe_dump refuses Python tuples)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
