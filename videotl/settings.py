"""Each setting declared once: a spec dataclass field carries its default, help and allowed values,
and a config section, its checks, the spec built from it and the listing of its keys follow.

A spec field is declared with :func:`setting`::

    num_tokens: int = setting(8, help="S, tokens per frame", positive=True)

and its config key is the field's name in capitals (``NUM_TOKENS``) unless ``key`` names another
(``HIDDEN_SIZE`` for ``dim``; a dotted key such as ``INIT.CHECKPOINT`` is a subsection). Then
:func:`add_section` writes the defaults into a config, :func:`check_section` appends the one-line
error of every value outside its declaration, and :func:`spec_from_section` builds the spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Type, Union, get_origin

from fvcore.common.config import CfgNode

__all__ = [
    "Setting",
    "SettingInfo",
    "add_section",
    "check_section",
    "describe_section",
    "setting",
    "spec_from_section",
    "spec_kwargs",
]

Choices = Union[Tuple[Any, ...], Callable[[], Iterable[Any]]]


@dataclass(frozen=True)
class Setting:
    """What a spec field declares beyond its type and default (see :func:`setting`)."""

    help: str
    key: str = ""
    choices: Optional[Choices] = None
    positive: bool = False
    non_negative: bool = False
    within: Optional[Tuple[float, float]] = None

    def allowed(self) -> Optional[Tuple[Any, ...]]:
        """The allowed values, read now (a registry's names include whatever was registered since)."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def bounds(self) -> str:
        """The allowed values in words ("" when any value of the type is)."""
        allowed = self.allowed()
        if allowed is not None:
            return ", ".join(map(repr, allowed))
        if self.positive or self.non_negative:
            return "> 0" if self.positive else ">= 0"
        return f"[{self.within[0]}, {self.within[1]}]" if self.within else ""

    def error(self, key: str, value: Any) -> Optional[str]:
        """The one-line error for ``value`` under ``key``, None when it is allowed."""
        allowed = self.allowed()
        values = value if isinstance(value, (list, tuple)) else [value]
        if allowed is not None and any(v not in allowed for v in values):
            each = "each must" if isinstance(value, (list, tuple)) else "must"
            return f"{key} = {value!r}: {each} be one of {', '.join(map(repr, allowed))}"
        if self.positive and any(v <= 0 for v in values):
            return f"{key} = {value!r}: must be > 0"
        if self.non_negative and any(v < 0 for v in values):
            return f"{key} = {value!r}: must be >= 0"
        if self.within is not None and not self.within[0] <= value <= self.within[1]:
            return f"{key} = {value!r}: must lie in [{self.within[0]}, {self.within[1]}]"
        return None


def setting(
    default: Any,
    *,
    help: str,
    key: str = "",
    choices: Optional[Choices] = None,
    positive: bool = False,
    non_negative: bool = False,
    within: Optional[Tuple[float, float]] = None,
) -> Any:
    """A dataclass field with its default and declaration.

    Args:
        default: the default (a tuple for a list-valued key: specs stay hashable).
        help: one line for the key listing.
        key: the config key when it is not the field's name in capitals (dots for subsections).
        choices: the allowed values, or a function returning them (a registry's ``names``).
        positive / non_negative: every value (each item of a list) > 0 / >= 0.
        within: the closed interval the value lies in.
    """
    declared = Setting(help, key, choices, positive, non_negative, within)
    return dataclasses.field(default=default, metadata={"setting": declared})


def _declared(spec: type) -> List[Tuple[dataclasses.Field, Setting]]:
    fields = [(f, f.metadata.get("setting")) for f in dataclasses.fields(spec)]
    undeclared = [f.name for f, declared in fields if declared is None]
    if undeclared:
        raise TypeError(f"{spec.__name__} fields {', '.join(undeclared)} are not declared with setting()")
    return fields


def _key(field: dataclasses.Field, declared: Setting) -> str:
    return declared.key or field.name.upper()


def _config_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def add_section(cfg: CfgNode, section: str, spec: type) -> None:
    """Write ``spec``'s defaults into ``cfg.<section>`` (created when absent)."""
    if section not in cfg:
        cfg[section] = CfgNode()
    for field, declared in _declared(spec):
        *parents, name = _key(field, declared).split(".")
        node = cfg[section]
        for parent in parents:
            if parent not in node:
                node[parent] = CfgNode()
            node = node[parent]
        node[name] = _config_value(field.default)


def _lookup(node: CfgNode, key: str) -> Any:
    for part in key.split("."):
        node = node[part]
    return node


def check_section(errors: List[str], cfg: CfgNode, section: str, spec: type) -> None:
    """Append to ``errors`` the one-line error of each key of ``cfg.<section>`` outside its declaration."""
    for field, declared in _declared(spec):
        key = _key(field, declared)
        error = declared.error(f"{section}.{key}", _lookup(cfg[section], key))
        if error:
            errors.append(error)


def spec_from_section(cfg: CfgNode, section: str, spec: Type[Any]) -> Any:
    """``spec`` built from ``cfg.<section>``: each field from its key (lists become tuples)."""
    values = {}
    for field, declared in _declared(spec):
        value = _lookup(cfg[section], _key(field, declared))
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return spec(**values)


class SettingInfo(NamedTuple):
    """One key of a section, as :func:`describe_section` lists it."""

    key: str
    type: str
    default: Any
    help: str
    allowed: str


def _type_name(annotation: Any) -> str:
    """``int``, ``float``, ...; ``list of int`` for a tuple field (a list-valued key)."""
    if isinstance(annotation, str):
        text = annotation
    else:
        text = str(annotation).replace("typing.", "") if get_origin(annotation) else annotation.__name__
    return f"list of {text[len('Tuple[') :].split(',')[0]}" if text.startswith("Tuple[") else text


def describe_section(section: str, spec: type) -> List[SettingInfo]:
    """Every key of the section ``spec`` declares: full key, type, default, help and allowed values."""
    rows = []
    for field, declared in _declared(spec):
        key = f"{section}.{_key(field, declared)}"
        rows.append(
            SettingInfo(key, _type_name(field.type), _config_value(field.default), declared.help, declared.bounds())
        )
    return rows


def spec_kwargs(spec: Any, *, prefix: str = "", leave_out: Iterable[str] = ()) -> Dict[str, Any]:
    """A spec's fields as a builder's keyword arguments, each named ``prefix + field``."""
    skipped = set(leave_out)
    return {prefix + f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in skipped}
