"""A name -> plug-in mapping that finds its built-in plug-ins by looking, not by a list.

Each sub-package of a plug-in package (``hitgen.detectors``, ``hitgen.families``) that exposes the
attribute named by ``attribute`` (``DETECTOR``, ``FAMILY``) is registered on first use; code outside
the package (a test, a user's module) adds its own with ``register``. Nothing here knows a name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from hitgen.core.errors import HitgenError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, attribute: str, what: str) -> None:
        self._package, self._attribute, self._what = package, attribute, what
        self._items: dict[str, T] = {}
        self._discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg:
                module = importlib.import_module(f"{self._package}.{info.name}")
                item = getattr(module, self._attribute, None)
                if item is not None and item.name not in self._items:
                    self._items[item.name] = item

    def register(self, item: T, replace: bool = False) -> T:
        """Add a plug-in under its ``name``; a second one of the same name needs ``replace``."""
        self._discover()
        name = item.name  # type: ignore[attr-defined]
        if name in self._items and not replace and self._items[name] is not item:
            raise ValueError(f"a {self._what} named '{name}' is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The plug-in called ``name``; HitgenError listing the known ones otherwise."""
        self._discover()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise HitgenError(f"unknown {self._what} {name!r}; known {self._what}s: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def __iter__(self) -> Iterator[T]:
        self._discover()
        return iter([self._items[n] for n in sorted(self._items)])

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items
