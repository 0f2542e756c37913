"""Read a relkd checkpoint safely: the one place every checkpoint a user names is opened.

A ``.ckpt`` is a PyTorch zip archive holding a pickle. Unpickling runs code, so a file is only
ever read with ``torch.load(..., weights_only=True)`` (tensors and plain containers, no other
objects), and a file that is not a zip archive at all (a bare pickle, a truncated or empty
download) is refused before anything reads its pickle. What is refused, and why, is one line
naming the file and the field at fault (a DataError), instead of a torch or Lightning
traceback:

- missing, empty, truncated or not a zip archive;
- a pickle referencing anything but weights (``GLOBAL os.system``): refused, never run;
- a checkpoint that is not relkd's: no ``state_dict`` of ``net.*`` weights, no
  ``pytorch-lightning_version`` (what relkd's Lightning modules write);
- weights whose shapes do not fit the net built for the dataset (another label scheme, another
  model size): :func:`check_state_fits`, called before any ``load_state_dict``.

Lightning's own ``trainer.test(ckpt_path=...)`` loads the file again; callers validate it here
first and pass ``weights_only=True`` to Lightning as well.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from relkd.errors import DataError

LIGHTNING_VERSION_KEY = "pytorch-lightning_version"
NET_PREFIX = "net."
HINT = "pass a relkd run's checkpoints/best.ckpt or last.ckpt"


def _reason(exc: BaseException) -> str:
    """A short reason from a torch loading error (its messages run to many lines)."""
    text = str(exc)
    found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
    if found:
        return f"it references {found.group(1)}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


def read_checkpoint(path: str | Path, field: str = "--ckpt") -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True``.

    ``field`` names the option or key that gave the path (``--ckpt``,
    ``model.seminar.init_from``) so the message says what to change. Raises DataError for
    every failure class listed in the module docstring; never unpickles a non-archive.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {field}: checkpoint not found; {HINT}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {field}: empty file, not a checkpoint; {HINT}")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: {field}: not a PyTorch checkpoint archive (truncated, or another format "
            f"such as a bare pickle; refused without reading it); {HINT}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter would break the one line
            # mmap: tensors stay on disk until used, so checking a 10 GB checkpoint is cheap
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path}: {field}: holds pickled objects that are not weights ({_reason(exc)}); "
            f"refused, nothing in it was run; {HINT}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: {field}: cannot read the checkpoint archive (truncated or corrupt: "
            f"{_reason(exc)}); {HINT}"
        ) from None
    return _require_relkd(path, field, ckpt)


def _require_relkd(path: Path, field: str, ckpt: Any) -> dict[str, Any]:
    """``ckpt`` if it carries what relkd's Lightning modules write, else a DataError."""
    if not isinstance(ckpt, dict) or LIGHTNING_VERSION_KEY not in ckpt:
        raise DataError(
            f"{path}: {field}: not a relkd checkpoint (no key {LIGHTNING_VERSION_KEY!r}: not "
            f"written by Lightning); {HINT}"
        )
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not any(
        isinstance(k, str) and k.startswith(NET_PREFIX) for k in state
    ):
        raise DataError(
            f"{path}: {field}: not a relkd checkpoint (key state_dict has no {NET_PREFIX}* "
            f"weights); {HINT}"
        )
    return ckpt


def checkpoint_state(path: str | Path, field: str = "--ckpt") -> dict[str, torch.Tensor]:
    """Every weight of a relkd checkpoint's ``state_dict`` (``net.``, and ``loss.`` for the
    training-only heads some loss terms own)."""
    return dict(read_checkpoint(path, field)["state_dict"])


def net_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``net.`` weights of a state dict, prefix removed."""
    return {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}


def check_state_fits(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    target: str,
) -> None:
    """Refuse, naming the first differing weight and both shapes, a checkpoint whose weights do
    not fit the module built here (``own``: its state dict, same key prefixes as ``state``).

    ``target`` says what was built (e.g. ``the student for DATA (wands: 3 labels)``), so the
    message tells which side to change. Checked before ``load_state_dict``, whose size-mismatch
    error is a multi-line traceback.
    """
    for key, value in state.items():
        mine = own.get(key)
        if mine is not None and tuple(mine.shape) != tuple(value.shape):
            raise DataError(
                f"{path}: field state_dict.{key} has shape {tuple(value.shape)}, "
                f"{target} needs {tuple(mine.shape)}; the checkpoint was trained on another "
                "label scheme or model size"
            )


__all__ = [
    "LIGHTNING_VERSION_KEY",
    "check_state_fits",
    "checkpoint_state",
    "net_weights",
    "read_checkpoint",
]
