"""The student architectures ``model.student`` may name: every ``SPEC`` a module of relkd/nets/
declares (relkd/nets/student_spec.py). A new student is its file (the net, a build function and
its ``SPEC``) and its YAML; nothing here changes."""

from __future__ import annotations

import pkgutil
from importlib import import_module

import relkd.nets as _nets_pkg
from relkd.errors import ConfigError
from relkd.nets.student_spec import StudentSpec


def _collect_specs() -> dict[str, StudentSpec]:
    """Every student ``SPEC`` declared by a module of relkd/nets/, by name."""
    specs: dict[str, StudentSpec] = {}
    for info in sorted(pkgutil.iter_modules(_nets_pkg.__path__), key=lambda m: m.name):
        spec = getattr(import_module(f"relkd.nets.{info.name}"), "SPEC", None)
        if isinstance(spec, StudentSpec):
            if spec.name in specs:
                raise ValueError(f"student {spec.name!r} declared twice")
            specs[spec.name] = spec
    return specs


STUDENT_SPECS: dict[str, StudentSpec] = _collect_specs()


def student_spec(name: str) -> StudentSpec:
    """The spec ``model.student`` names; a one-line ConfigError listing the known ones."""
    try:
        return STUDENT_SPECS[name]
    except KeyError:
        raise ConfigError(f"model.student: {name!r} not in {sorted(STUDENT_SPECS)}") from None


def servable_students() -> list[str]:
    """The students ``relkd export`` serves (those with a serving graph)."""
    return sorted(n for n, s in STUDENT_SPECS.items() if s.serving_graph is not None)


__all__ = ["STUDENT_SPECS", "servable_students", "student_spec"]
