"""Small helpers the per-concern validators share."""

from typing import Any, Iterable, List


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or inconsistent; the message names the key."""


def lookup(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def require_choice(errors: List[str], cfg, key: str, choices: Iterable[str]) -> None:
    value = lookup(cfg, key)
    choices = tuple(choices)
    if value not in choices:
        errors.append(f"{key} = {value!r}: must be one of {', '.join(map(repr, choices))}")


def require_positive(errors: List[str], cfg, key: str, allow_zero: bool = False) -> None:
    value = lookup(cfg, key)
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if (v < 0 if allow_zero else v <= 0)]
    else:
        bad = [value] if (value < 0 if allow_zero else value <= 0) else []
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        errors.append(f"{key} = {value!r}: must be {bound}")


def require_range(errors: List[str], cfg, key: str, low: float, high: float) -> None:
    value = lookup(cfg, key)
    if not low <= value <= high:
        errors.append(f"{key} = {value!r}: must lie in [{low}, {high}]")
