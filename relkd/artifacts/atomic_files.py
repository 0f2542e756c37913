"""Crash-safe writes and cheap integrity checks shared by every relkd artifact.

A reader must never see half a file or half a folder, whatever moment a process is killed at,
and must notice a file edited after it was recorded. Files are written to a temporary sibling,
flushed to disk (fsync) and renamed over the target; folders are built in a staging sibling and
renamed into place. A file is recorded as ``{"bytes", "mtime_ns", "sha256"}``: re-checking it
compares size and mtime first and only re-hashes when they differ (a copy, a touch or an edit).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from relkd.artifacts.identity import sha256_file, sha256_hex
from relkd.errors import DataError, StaleArtifactError

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temp_file(parent: Path, prefix: str) -> tuple[int, Path]:
    """Create an empty uniquely named file with the usual permissions (0o666 less the umask),
    returning its open descriptor: mkstemp's 0o600 would survive the rename and leave e.g. a
    dataset manifest unreadable to everyone but its writer."""
    while True:
        tmp = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _new_temp_dir(parent: Path, prefix: str) -> Path:
    """Create a uniquely named folder with the usual permissions (mkdtemp's are 0o700)."""
    while True:
        tmp = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` to make the file at a temporary sibling, fsync it and rename it to
    ``path`` (replacing an existing file). A kill at any moment leaves either the old file or
    the new one, plus at most a ``.tmp-*`` sibling."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path.parent, f"{TMP_PREFIX}{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def create_exclusive(path: str | Path, data: bytes) -> bool:
    """Write ``path`` only if it does not exist yet, atomically (hard link of a synced temp
    file); returns False when another process created it first. Used when several processes
    (shards of one job) may all try to create the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = _new_temp_file(path.parent, f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(name, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        Path(name).unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(root: str | Path) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``root``; the caller fills it and renames it into
    place (see :func:`move_into_place`). The staging folder is removed if the block fails."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_temp_dir(root.parent, f".{root.name}.")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging.exists():  # not moved into place by the caller
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: Path, root: Path, replace: bool = False) -> bool:
    """Rename a finished staging folder to ``root``.

    Without ``replace`` an existing ``root`` wins (another process built the same thing first;
    returns False and the staging folder is discarded). With ``replace`` the old folder is moved
    aside first and restored if the rename fails, so there is no moment without a complete
    folder on disk; callers must have checked that ``root`` is theirs to replace.
    """
    for sub in staging.rglob("*"):
        if sub.is_file():
            _fsync_file(sub)
    if root.exists() and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        try:
            staging.replace(root)
        except OSError:
            if not root.exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return False
        fsync_dir(root.parent)
        return True
    if not replace:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    backup = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    backup.rmdir()
    root.replace(backup)
    try:
        staging.replace(root)
    except BaseException:
        backup.replace(root)
        raise
    fsync_dir(root.parent)
    shutil.rmtree(backup, ignore_errors=True)
    return True


def check_replaceable(root: Path, shown: Path, owned: bool, what: str) -> None:
    """Refuse to replace ``root`` unless it is ``owned`` (a folder of the artifact kind being
    written, e.g. it has that kind's manifest) and is not the working folder or one of its
    parents. ``shown`` is the path as the user gave it, for the message."""
    if not root.is_dir():
        raise DataError(f"{shown}: exists and is not a folder")
    if not owned:
        raise DataError(f"{shown}: is not a {what}; refusing to delete it to overwrite")
    resolved, cwd = root.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise DataError(
            f"{shown}: is the working folder or one of its parents; refusing to overwrite it"
        )


def record_seal(size: Any, mtime_ns: Any, sha256: Any) -> str:
    """Binds a record's size and mtime to its sha256: a record whose sha256 was edited (the
    file untouched) no longer matches its seal, so the cheap size-and-mtime check is refused and
    the file is hashed."""
    # a plain prefix, not short_id: seals recorded in existing manifests must keep matching
    return sha256_hex(f"{size}:{mtime_ns}:{sha256}")[:16]


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"bytes", "mtime_ns", "sha256", "seal"}`` of a file, for :func:`check_file_record`."""
    st = Path(path).stat()
    digest = sha256_file(path)
    return {
        "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": digest,
        "seal": record_seal(st.st_size, st.st_mtime_ns, digest),
    }


DATA_HINT = "run `relkd data validate`, then rebuild it or restore the original"


def check_file_record(
    path: str | Path, record: dict[str, Any], owner: str | Path, hint: str = DATA_HINT
) -> str:
    """Check ``path`` against its record; returns its (verified) sha256.

    Size and mtime equal to the record's mean unchanged (no read), unless the record's seal
    (records written since it existed) shows its sha256 was edited; otherwise the file is hashed
    and must still have the recorded sha256. Raises DataError when the file is missing and
    StaleArtifactError naming the file and ``owner`` (the manifest) when its content changed.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: missing (listed in {owner})") from None
    want = record.get("sha256")
    seal = record.get("seal")
    sealed = seal is None or seal == record_seal(record.get("bytes"), record.get("mtime_ns"), want)
    untouched = st.st_size == record.get("bytes") and st.st_mtime_ns == record.get("mtime_ns")
    if untouched and want and sealed:
        return str(want)
    have = sha256_file(path)
    if have != want and untouched:
        raise StaleArtifactError(
            f"{path}: sha256 {have[:12]} != {str(want)[:12]} recorded in {owner}; the file is "
            f"unchanged, its record (sha256) was edited ({hint})"
        )
    if have != want:
        raise StaleArtifactError(
            f"{path}: sha256 {have[:12]} != {str(want)[:12]} recorded in {owner}; the file was "
            f"changed after it was written ({hint})"
        )
    return have
