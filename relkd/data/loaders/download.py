"""Fetch the upstream ESCI or WANDS files (for machines with internet access).

- ESCI: ``shopping_queries_dataset_examples.parquet`` and ``..._products.parquet`` from the
  ``shopping_queries_dataset/`` folder of github.com/amazon-science/esci-data. They are Git LFS
  objects, so they come from the ``media.githubusercontent.com/media/...`` URL (the raw URL
  would serve the small LFS pointer file instead).
- WANDS: ``product.csv``, ``query.csv`` and ``label.csv`` from the ``dataset/`` folder of
  github.com/wayfair/WANDS (raw URL first; the media URL if the raw one is an LFS pointer).

Every URL names a pinned commit (:data:`COMMITS`), never ``main``: upstream may rewrite a file
and a dataset imported today must be the one imported next year. Each file streams into
``<name>.part``, its sha256 is checked against :data:`PINNED_SHA256`, and only a complete file
with the pinned digest is renamed into place; a mismatch is refused and the ``.part`` removed,
so neither an interrupted nor a substituted download ever sits under the final name. A file
that is already there is kept when its digest matches (delete it, or pass ``overwrite=True``, to
fetch it again) and refused, untouched, when it does not.

Provenance of the pins: the commits are the ones public code downloading these datasets pins
(esci-data ``main`` was checked to be 7916cdf6... by such code); this module was written offline,
so neither they nor any file digest could be fetched here. A digest left ``None`` is not
verified: the download prints the sha256 it got, to be checked once and pinned here.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from relkd.artifacts.atomic_files import sha256_file
from relkd.errors import RelkdError

# dataset -> the upstream commit every URL is pinned to (not verified offline: see above)
COMMITS: dict[str, str] = {
    "esci": "7916cdf6ab75a462e77f20ab40428a10923998d5",  # github.com/amazon-science/esci-data
    "wands": "3b74dcf4ba29ab8ff3e6a50b5b09fc627cb882b5",  # github.com/wayfair/WANDS
}
ESCI_MEDIA = (
    "https://media.githubusercontent.com/media/amazon-science/esci-data/"
    f"{COMMITS['esci']}/shopping_queries_dataset/"
)
WANDS_RAW = f"https://raw.githubusercontent.com/wayfair/WANDS/{COMMITS['wands']}/dataset/"
WANDS_MEDIA = f"https://media.githubusercontent.com/media/wayfair/WANDS/{COMMITS['wands']}/dataset/"

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
# dataset -> file name -> expected sha256 at the pinned commit; None: not yet pinned (nothing
# could be fetched where this was written), so the download reports the digest it got instead
PINNED_SHA256: dict[str, dict[str, str | None]] = {
    dataset: dict.fromkeys(files) for dataset, files in SOURCES.items()
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
    sha256: Mapping[str, str | None] | None = None,
) -> list[Path]:
    """Download the upstream files of ``dataset`` (``esci`` or ``wands``) into folder ``to``.

    ``sha256`` (file name -> digest) replaces :data:`PINNED_SHA256`'s entries. Prints what was
    fetched and the ``relkd data import`` command to run next; returns the paths of the files
    now in place.
    """
    out = out or sys.stdout
    if dataset not in SOURCES:
        raise RelkdError(f"unknown dataset {dataset!r}; known: {sorted(SOURCES)}")
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    pinned = {**PINNED_SHA256[dataset], **(sha256 or {})}
    for name, urls in SOURCES[dataset].items():
        target = to / name
        expected = pinned.get(name)
        if target.exists() and not overwrite:
            got = sha256_file(target) if expected else None
            if got != expected:
                raise DownloadError(
                    f"{target}: sha256 {got} != {expected} pinned for commit "
                    f"{COMMITS[dataset]}; it is not the upstream file: move it away to fetch it"
                )
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
            got = sha256_file(part)
            if expected and got != expected:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: sha256 {got} != pinned {expected}; refused")
                continue
            os.replace(part, target)
            check = "verified" if expected else "not pinned: check it, then pin it"
            print(f"fetched {target} ({size:,} bytes) from {url}; sha256 {got} ({check})", file=out)
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
