"""Fetch the upstream ESCI or WANDS files (for machines with internet access).

- ESCI: ``shopping_queries_dataset_examples.parquet`` and ``..._products.parquet`` from the
  ``shopping_queries_dataset/`` folder of github.com/amazon-science/esci-data. They are Git LFS
  objects, so they come from the ``media.githubusercontent.com/media/...`` URL (the raw URL
  would serve the small LFS pointer file instead).
- WANDS: ``product.csv``, ``query.csv`` and ``label.csv`` from the ``dataset/`` folder of
  github.com/wayfair/WANDS (raw URL first; the media URL if the raw one is an LFS pointer).

Each file streams into ``<name>.part`` and is renamed into place only when complete, so an
interrupted download never leaves a truncated file under the final name. A file that is already
there is kept (delete it, or pass ``overwrite=True``, to fetch it again).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from relkd.errors import RelkdError

ESCI_MEDIA = (
    "https://media.githubusercontent.com/media/amazon-science/esci-data/main/"
    "shopping_queries_dataset/"
)
WANDS_RAW = "https://raw.githubusercontent.com/wayfair/WANDS/main/dataset/"
WANDS_MEDIA = "https://media.githubusercontent.com/media/wayfair/WANDS/main/dataset/"

# dataset -> file name -> URLs tried in order
SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "esci": {
        name: (ESCI_MEDIA + name,)
        for name in (
            "shopping_queries_dataset_examples.parquet",
            "shopping_queries_dataset_products.parquet",
        )
    },
    "wands": {
        name: (WANDS_RAW + name, WANDS_MEDIA + name)
        for name in ("product.csv", "query.csv", "label.csv")
    },
}
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
CHUNK = 1 << 20


class DownloadError(RelkdError):
    """A download failed; the message names the URL and the target file."""


def _fetch(url: str, part: Path, timeout: float) -> int:
    """Stream ``url`` into ``part``; returns the byte count."""
    request = urllib.request.Request(url, headers={"User-Agent": "relkd-data-download"})
    size = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as fh:
        while block := response.read(CHUNK):
            fh.write(block)
            size += len(block)
    return size


def _is_lfs_pointer(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def download(
    dataset: str,
    to: str | Path,
    *,
    overwrite: bool = False,
    timeout: float = 60.0,
    out: TextIO | None = None,
) -> list[Path]:
    """Download the upstream files of ``dataset`` (``esci`` or ``wands``) into folder ``to``.

    Prints what was fetched and the ``relkd data import`` command to run next; returns the
    paths of the files now in place.
    """
    out = out or sys.stdout
    if dataset not in SOURCES:
        raise RelkdError(f"unknown dataset {dataset!r}; known: {sorted(SOURCES)}")
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    for name, urls in SOURCES[dataset].items():
        target = to / name
        if target.exists() and not overwrite:
            print(f"kept {target} (already there; delete it to fetch again)", file=out)
            done.append(target)
            continue
        part = target.with_name(target.name + ".part")
        errors: list[str] = []
        for url in urls:
            try:
                size = _fetch(url, part, timeout)
            except (urllib.error.URLError, OSError) as exc:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: {exc}")
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            if _is_lfs_pointer(part):
                part.unlink(missing_ok=True)
                errors.append(f"{url}: served a Git LFS pointer, not the file")
                continue
            os.replace(part, target)
            print(f"fetched {target} ({size:,} bytes) from {url}", file=out)
            done.append(target)
            break
        else:
            raise DownloadError(f"{target}: download failed (" + "; ".join(errors) + ")")
    # resolved: ``Path(".").with_name`` raises (an empty name), and ``..`` has no useful name
    folder = to.resolve()
    dest = folder.with_name(f"{folder.name}-canonical") if folder.name else folder / "canonical"
    extra = " --locale us --version small" if dataset == "esci" else ""
    print(f"next: relkd data import {dataset} {_quote(to)} --out {_quote(dest)}{extra}", file=out)
    return done


def _quote(path: Path) -> str:
    text = str(path)
    return f"'{text}'" if any(c.isspace() for c in text) or not text else text
