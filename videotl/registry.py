"""One registry mechanism for every extension point: models, datasets, tokenizers, fusers, res5
operators, metrics, config concerns.

A :class:`Registry` maps names to objects of one kind::

    TOKENIZERS = Registry("tokenizer")

    @TOKENIZERS.register("my_tokenizer")
    def build_my_tokenizer(*, dim, settings): ...

    TOKENIZERS.get("my_tokenizer")        # the object; an unknown name raises RegistryError
    TOKENIZERS.names("token*")            # sorted names matching a shell pattern

Registering a name that is taken raises :class:`RegistryError` (a user's model registered under a
built-in name would otherwise shadow it unnoticed); ``override=True`` replaces the old entry, and
says so with a :class:`RegistryOverwriteWarning`. Registering the same object again is no change.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import warnings
from typing import Callable, Dict, Generic, Iterator, List, Optional, TypeVar, Union

__all__ = ["Registry", "RegistryError", "RegistryOverwriteWarning"]

T = TypeVar("T")

logger = logging.getLogger("videotl")


class RegistryError(KeyError):
    """A name is not registered; the message lists the close and the known names."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; the message reads better without.
        return str(self.args[0]) if self.args else ""


class RegistryOverwriteWarning(UserWarning):
    """A registered name was registered again with ``override=True``; the new entry replaced the old one."""


class Registry(Generic[T]):
    """Named objects of one ``kind`` (the word used in error messages: "model", "dataset", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None, *, override: bool = False) -> Union[T, Callable[[T], T]]:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does. A taken
        name raises :class:`RegistryError` unless ``override`` (then the new entry replaces it)."""
        if obj is not None:
            self._add(name, obj, override=override)
            return obj

        def decorator(target: T) -> T:
            self._add(name, target, override=override)
            return target

        return decorator

    def _add(self, name: str, obj: T, *, override: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        old = self._entries.get(name)
        if old is not None and old is not obj:
            if not override:
                raise RegistryError(
                    f"{self.kind} {name!r} is registered already ({_describe(old)}): choose another name, "
                    f"or pass override=True to replace it with {_describe(obj)}"
                )
            message = f"{self.kind} {name!r} registered again: {_describe(obj)} replaces {_describe(old)}"
            warnings.warn(message, RegistryOverwriteWarning, stacklevel=4)
            logger.warning(message)
        self._entries[name] = obj

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it held (tests and plugins that undo a registration)."""
        self._check(name)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        self._check(name)
        return self._entries[name]

    def _check(self, name: str) -> None:
        if name in self._entries:
            return
        close = difflib.get_close_matches(str(name), list(self._entries), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})")

    def names(self, pattern: str = "*") -> List[str]:
        """Registered names matching the shell-style ``pattern``, sorted."""
        return sorted(name for name in self._entries if fnmatch.fnmatchcase(name, pattern))

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else name
