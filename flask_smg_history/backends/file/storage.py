"""The file backend's dealings with the disk: folder names, locks, atomic
writes with backups, and reads that report a broken file by name.

Why each rule:

- **Names.** Owner names are arbitrary strings, so one is never used as a
  path: an owner's folder is a readable slug of the name plus a hash of the
  exact name (``alice.3b1f...``; ``owner.json`` inside holds the real name), so
  ``../x``, ``/`` or ``Alice`` beside ``alice`` cannot escape the root or meet
  another owner's folder, even on a case-insensitive disk. Record IDs become
  file names only when they are made of letters, digits, ``_`` and ``-``
  (what the API accepts); any other ID names no record.
- **Locks.** ``fcntl.flock`` on a lock file per owner, shared for reads and
  exclusive for writes. A lock is taken on a file opened for that one call: flock
  belongs to the open file description, so two threads of one process
  exclude each other exactly as two processes do, and no thread lock is
  needed. Lock files live in ``.locks/`` (named by the hash alone) and are
  never deleted: erasing an owner removes the folder, and a writer still
  waiting on a deleted lock file would hold a lock nobody else can see.
- **Atomic writes.** A file is written to a temporary name in its folder,
  flushed to disk (``fsync``), renamed over the old one and the folder
  fsynced: a reader or a crash sees the old file whole or the new one whole.
  With backups, the old version is first hard-linked to ``name.bak1`` (earlier
  ones shift to ``.bak2``...), so the file itself is never missing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ...errors import CorruptRecord

#: A record ID that may name a file (the API's ``ID_RULE``).
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Folder of the lock files, under the root.
LOCKS = ".locks"
#: How a backup's name ends: ``conversation.json.bak1`` is the newest.
BACKUP_SUFFIX = ".bak"
_TEMPORARY = ".tmp"
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
#: Errors of the disk itself; a 503 answers them (``FileBackend.unavailable_errors``).
DISK_ERRNOS = {
    errno.EACCES: "the folder is not readable and writable by this process",
    errno.EPERM: "the folder is not readable and writable by this process",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the folder is on a read-only file system",
    errno.ENOTDIR: "a part of the folder's path is a file, not a folder",
}


class CorruptFile(CorruptRecord):
    """A file of the backend's folder that is not what it writes: a broken
    or hand-edited JSON document, or one missing a field. Named in the
    message by its path under the root, so the operator knows which file to
    fix or restore (from its ``.bak1``); the error is about that record only.

    A 503, not CorruptRecord's 500: the request was right and the service
    will answer it once the file is repaired; it is never a silent loss
    either, since a broken file is neither skipped by listings nor
    overwritten by writes."""

    status = 503


def owner_key(owner: str) -> str:
    """64 bits of SHA-256 of the exact owner name."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def owner_folder_name(owner: str) -> str:
    slug = _SLUG.sub("_", owner).strip("_")[:40] or "owner"
    return f"{slug}.{owner_key(owner)}"


def safe_id(value: str) -> bool:
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


class Folder:
    """The backend's root folder, with the disk operations on it."""

    def __init__(self, root: Path, backups: int) -> None:
        self.root = root
        self.backups = backups

    def shown(self, path: Path) -> str:
        """A path as error messages show it: under the root, so an API
        client is told which file, not where the server keeps its data."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # -- locks ---------------------------------------------------------------
    @contextmanager
    def locked(self, owner: str, *, exclusive: bool) -> Iterator[None]:
        locks = self.root / LOCKS
        path = locks / f"{owner_key(owner)}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- reads ---------------------------------------------------------------
    def read(self, path: Path, what: str) -> Any:
        """The JSON document at ``path``; ``FileNotFoundError`` when there is
        none, ``CorruptFile`` naming ``what`` and the file when it is not JSON."""
        with open(path, "rb") as handle:
            raw = handle.read()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.corrupt(path, what, str(exc)) from None

    def corrupt(self, path: Path, what: str, reason: str) -> CorruptFile:
        return CorruptFile(
            f"{what} is stored in a form this backend cannot read (file {self.shown(path)}: {reason}); "
            f"fix the file or restore an earlier version of it ({path.name}{BACKUP_SUFFIX}1 when backups are kept)."
        )

    # -- writes --------------------------------------------------------------
    def write(self, path: Path, document: Any) -> None:
        """Replace ``path`` by ``document`` atomically and durably, keeping
        ``backups`` earlier versions beside it."""
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMPORARY}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if self.backups:
                self._rotate(path)
            os.replace(temporary, path)
        except BaseException:
            _unlink(temporary)
            raise
        self.sync_folder(path.parent)

    def _rotate(self, path: Path) -> None:
        """Shift ``.bak1``.. one place (dropping the oldest) and link the
        current file as ``.bak1``; the file itself stays in place."""
        if not path.exists():
            return
        for n in range(self.backups - 1, 0, -1):
            older = backup_path(path, n)
            if older.exists():
                os.replace(older, backup_path(path, n + 1))
        newest = backup_path(path, 1)
        _unlink(newest)
        os.link(path, newest)

    def remove(self, path: Path) -> None:
        """Remove a file and its backups (a deleted record leaves no copy
        behind); nothing to do for those not there."""
        for n in range(1, self.backups + 1):
            _unlink(backup_path(path, n))
        _unlink(path)

    def remove_tree(self, folder: Path) -> None:
        """Remove a folder and everything in it: renamed away first, in one
        step, so readers see it whole or gone."""
        gone = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.deleted")
        try:
            os.replace(folder, gone)
        except FileNotFoundError:
            return
        self.sync_folder(folder.parent)
        shutil.rmtree(gone)

    @staticmethod
    def sync_folder(folder: Path) -> None:
        """fsync a folder, so a rename or removal in it survives a crash."""
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def backup_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}{BACKUP_SUFFIX}{n}")


def listing(folder: Path, suffix: str = "") -> list[str]:
    """The names in ``folder`` a record may be stored under (no temporary
    file, backup or folder being deleted), ending with ``suffix`` (which is
    cut off); empty when the folder does not exist."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [name[: len(name) - len(suffix)] for name in names if not name.startswith(".") and name.endswith(suffix)]


def _unlink(path: Path) -> None:
    """Remove a file that may already be gone."""
    with suppress(FileNotFoundError):
        os.unlink(path)


def disk_problem(exc: BaseException) -> str | None:
    """What is wrong with the disk, for an ``OSError`` that says so."""
    return DISK_ERRNOS.get(exc.errno) if isinstance(exc, OSError) else None
