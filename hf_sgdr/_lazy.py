"""Lazy package attributes (PEP 562) and a run-after-import hook, so that `import hf_sgdr` stays light.

`lazy_attributes` gives a package a module `__getattr__` / `__dir__` that import a name's module only
when the name is first used. `when_imported` runs a function right after a module has been executed
(at once when it already is): `hf_sgdr` uses it to register ``"sgdr"`` with `transformers` the moment
`transformers.trainer_utils` / `transformers.optimization` are imported, instead of importing them
itself (with `peft` installed, `transformers.trainer_utils` imports it: seconds).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], eager: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`: `names` maps each public name to its module (relative
    to the package, e.g. ``".scheduler"``). A resolved name is cached in the package's namespace."""
    shown = sorted({*names, *eager})

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return shown

    return __getattr__, __dir__


class _HookedLoader:
    """Delegates to the real loader and calls the hooks once the module has been executed."""

    def __init__(self, loader: Any, finder: _PostImportFinder, name: str) -> None:
        self._loader, self._finder, self._name = loader, finder, name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        for hook in self._finder.pop(self._name):
            hook(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path` while hooks wait; finds nothing itself, wraps the loader others find."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, hook: Callable[[ModuleType], None]) -> None:
        with self._lock:
            self._hooks.setdefault(name, []).append(hook)
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def pop(self, name: str) -> list[Callable[[ModuleType], None]]:
        with self._lock:
            hooks = self._hooks.pop(name, [])
            if not self._hooks and self in sys.meta_path:
                sys.meta_path.remove(self)
            return hooks

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                # Hooks stay registered until the module is executed: a bare find_spec does not use them up.
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, self, fullname)
                return spec
        return None


_FINDER = _PostImportFinder()


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call `hook(module)` once module `name` has been imported: now if it already is, else right after
    it is executed (before the ``import`` statement that triggered it returns)."""
    module = sys.modules.get(name)
    if module is not None:
        hook(module)
    else:
        _FINDER.add(name, hook)


def moved_names(old_module: str, names: Mapping[str, str], removal: str = "0.3") -> Callable[[str], Any]:
    """A module `__getattr__` for a renamed module: each of `old_module`'s public names comes from its new module
    (`names`: name -> absolute module), with a `FutureWarning` saying where to import it from."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            f"{old_module} is deprecated and will be removed in hf_sgdr {removal}: import {name} from {module}",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)

    return __getattr__
