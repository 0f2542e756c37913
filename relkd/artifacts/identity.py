"""Identity: every digest relkd records or names a folder by comes from here.

Artifacts (tokenized stores, graphs, sequences, term lists), pipeline and ablation steps,
teacher caches, ONNX exports, perturbed datasets, prompts and tokenizers all identify their
inputs by SHA-256: of bytes or text (:func:`sha256_hex`), of a file (:func:`sha256_file`), or of
the canonical JSON of a mapping (:func:`json_digest`: keys sorted, so the order a dict was built
in never matters). A short id (:func:`short_id`) is a prefix of one, made safe to pass where a
YAML or OmegaConf value is read: a prefix such as ``76e112215421`` (a float, inf) or
``123456789012`` (an int) gets its first character replaced by ``x``, so it never parses as a
number. Every other prefix is unchanged, so ids recorded before this rule still match.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# what YAML (and OmegaConf) would read as a number among hex strings: digits, or digits e digits
_NUMERIC = re.compile(r"[0-9]+(?:[eE][0-9]+)?")


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of ``data`` (text is UTF-8 encoded)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    return sha256_files([Path(path)], chunk=chunk, with_names=False)


def sha256_files(paths: Iterable[Path], chunk: int = 1 << 22, with_names: bool = True) -> str:
    """Hex SHA-256 over several files in the given order: each file's name (``with_names``)
    then its bytes."""
    digest = hashlib.sha256()
    for path in paths:
        if with_names:
            digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def json_digest(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Hex SHA-256 of ``obj``'s canonical JSON (``json.dumps(obj, sort_keys=True)``);
    ``default`` turns values JSON cannot write into ones it can (e.g. ``str``)."""
    return sha256_hex(json.dumps(obj, sort_keys=True, default=default))


def looks_numeric(text: str) -> bool:
    """Whether YAML / OmegaConf would read ``text`` as a number rather than a string."""
    return _NUMERIC.fullmatch(text) is not None


def short_id(digest: str, length: int = 12) -> str:
    """The first ``length`` characters of a hex digest, never a string that parses as a number
    (its first character becomes ``x`` when it would)."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    prefix = digest[:length]
    return "x" + prefix[1:] if looks_numeric(prefix) else prefix


__all__ = [
    "json_digest",
    "looks_numeric",
    "sha256_file",
    "sha256_files",
    "sha256_hex",
    "short_id",
]
