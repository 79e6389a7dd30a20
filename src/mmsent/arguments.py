"""Command-line options generated from the typed configs, so each setting is defined once.

Every dataclass field becomes a kebab-case option (`batch_size` -> `--batch-size`) whose help is the
field's own `help` (config.setting's metadata), read from the class itself, so it holds without .py sources. Values are parsed the way SageMaker passes hyperparameters: numbers
as text, booleans as True/true/false/1/0, lists comma-separated. Options default to None, so
`config_from_args` can tell a value the user gave from one left to the dataclass default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_names(text: str) -> tuple[str, ...]:
    """A comma-separated list; "" or "none" is the empty list."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in parse_names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _number(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def field_help(cls: type) -> dict[str, str]:
    """Each field's one-line 'when to change it' (config.setting's `help`), escaped for argparse."""
    return {f.name: f.metadata.get("help", "").replace("%", "%%") for f in dataclasses.fields(cls)}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        hint = _without_none(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        option = "--" + field.name.replace("_", "-")
        help_text = f"{helps[field.name]} (default: {_show(default)})"
        kwargs: dict = {"dest": field.name, "default": None, "help": help_text}
        if hint is bool:
            kwargs |= {"type": parse_bool, "nargs": "?", "const": True, "metavar": "BOOL"}
        elif hint in (tuple[str, ...],):
            kwargs |= {"type": parse_names, "metavar": "A,B"}
        elif hint in (tuple[int, ...],):
            kwargs |= {"type": parse_ints, "metavar": "N,N"}
        else:
            kwargs["type"] = _number(hint) if hint in (int, float) else hint
            kwargs["metavar"] = hint.__name__.upper()
        parser.add_argument(option, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **overrides):
    """An instance of `cls` from the options the user gave; dataclass defaults for the rest."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return cls(**(given | overrides))


def given(args: argparse.Namespace, name: str) -> bool:
    return getattr(args, name, None) is not None


def _without_none(hint):
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _show(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)
