"""Options every loader takes and checks (on_empty, fractions, the output folder), the input files'
hashes, and how an error shows example values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relkd.data.manifest import sha256_file
from relkd.errors import ConfigError, DataError

ON_EMPTY = ("error", "drop")


def examples(values: Iterable[Any], k: int = 5) -> str:
    """The first ``k`` values as a short list for an error message."""
    vals = list(values)
    head = ", ".join(repr(v) for v in vals[:k])
    return f"[{head}{', ...' if len(vals) > k else ''}]"


def check_on_empty(on_empty: str) -> str:
    if on_empty not in ON_EMPTY:
        raise ConfigError(
            f"option on_empty (--on-empty) must be one of {list(ON_EMPTY)}, got {on_empty!r}"
        )
    return on_empty


def check_fractions(**fractions: float) -> None:
    """Each named fraction in [0, 1) and their sum < 1 (train keeps the rest)."""
    for key, value in fractions.items():
        if not 0.0 <= float(value) < 1.0:
            opt = "--" + key.replace("_", "-")
            raise ConfigError(f"option {key} ({opt}) must be in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise ConfigError(
            f"split fractions {fractions} leave nothing for train; their sum must be < 1"
        )


def guard_out(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output folder that is, or contains, an input file: writing it (and with
    overwrite, replacing it) would touch the inputs."""
    out_r = Path(out).resolve()
    for path in inputs:
        p = Path(path).resolve()
        if p == out_r or out_r in p.parents:
            raise ConfigError(
                f"--out {out} contains the input file {path}; "
                "choose an output folder outside the inputs"
            )


def input_hashes(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{file name: sha256}`` for the manifest; a path is used where two names collide."""
    out: dict[str, str] = {}
    paths = [Path(p) for p in paths]
    names = Counter(p.name for p in paths)
    for p in paths:
        out[p.name if names[p.name] == 1 else str(p)] = sha256_file(p)
    return out


def require_file(path: Path, hint: str = "") -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found{'; ' + hint if hint else ''}")
    return path


__all__ = [
    "ON_EMPTY",
    "check_fractions",
    "check_on_empty",
    "examples",
    "guard_out",
    "input_hashes",
    "require_file",
]
