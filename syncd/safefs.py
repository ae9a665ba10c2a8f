"""Every change the sync daemon makes under its folder, made without following symlinks.

The daemon never writes through a symlink or outside its root. Each operation opens the root,
then walks the parent folders one component at a time from the previous folder's file
descriptor with ``O_DIRECTORY | O_NOFOLLOW``, and acts relative to the last one (``mkdir``,
``rename``, ``unlink``, ``rmdir`` with ``dir_fd``; new files with ``O_CREAT | O_EXCL |
O_NOFOLLOW``). A component that is a symlink or a file, or a path that tries to leave the root,
raises ``UnsafePath``; a name or path the local filesystem cannot hold raises
``UnusableName``. Both are ``SkipPath``: the caller reports the path and syncs everything else.

Because every step is relative to a descriptor already open, swapping a folder for a symlink
between a check and a write cannot redirect the write: the walk either fails on the symlink or
acts on the real folder it opened. Downloads land in a temporary file with a short name of its
own (``.tessera-<16 hex>.tessera-part``, 38 bytes, whatever the final name) and are renamed
into place only if the parent folder is still the one reached from the root.

Pure standard library; no other part of the daemon is imported here.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "SafeFS",
    "SkipPath",
    "TempFile",
    "UnsafePath",
    "UnusableName",
    "temp_name",
]

TEMP_PREFIX = ".tessera-"
TEMP_SUFFIX = ".tessera-part"
"""Temporary download files are ``TEMP_PREFIX + 16 hex digits + TEMP_SUFFIX``: never synced."""

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BAD_NAME = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}


class SkipPath(Exception):
    """A path the daemon must not (or cannot) write here: report it, skip it, sync the rest.

    Attributes:
        path: the relative path of the offending component ("" for the root itself).
        reason: what is wrong with it, as the end of a sentence ("is a symlink").
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or 'the sync folder'} {reason}")
        self.path = path
        self.reason = reason


class UnsafePath(SkipPath):
    """A component is a symlink or not a folder, or the path leaves the root."""


class UnusableName(SkipPath):
    """The local filesystem cannot hold this name or path (too long, invalid bytes, a clash)."""


def temp_name() -> str:
    """A fresh temporary name: 38 bytes whatever the final name is."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def split(rel: str) -> list[str]:
    """The components of a relative "/"-separated path; refuses anything that could leave the root.

    Raises:
        UnsafePath: an absolute path, an empty, ``.`` or ``..`` component, or a NUL byte.
    """
    if rel == "":
        return []
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise UnsafePath(rel, "leaves the sync folder (absolute, empty, '.' or '..' component)")
    return parts


def _join(parts: list[str]) -> str:
    return "/".join(parts)


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class SafeFS:
    """Creates, writes, renames, chmods and deletes under ``root`` without following symlinks."""

    def __init__(self, root: Path) -> None:
        """``root`` should be absolute and resolved (its own ancestors are trusted)."""
        self.root = Path(os.path.abspath(root))
        self._root_bytes = len(os.fsencode(self.root))
        try:
            self.path_max = os.pathconf(self.root, "PC_PATH_MAX")
        except (OSError, ValueError):
            self.path_max = 4096

    # -- walking -------------------------------------------------------------------------
    def _open_root(self) -> int:
        try:
            return os.open(self.root, _DIR)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(
                    "", "is no longer a folder (replaced by a symlink or a file?)"
                ) from None
            raise

    def _classify(self, e: OSError, dir_fd: int, name: str, where: str) -> BaseException:
        """Turn an error on ``name`` (inside ``dir_fd``) into UnsafePath/UnusableName if it is one."""
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                return e
            if stat_mod.S_ISLNK(st.st_mode):
                return UnsafePath(where, "is a symlink (nothing is written through it)")
            if not stat_mod.S_ISDIR(st.st_mode):
                return UnsafePath(where, "is a file here, not a folder")
            return e
        if e.errno in _BAD_NAME:
            return UnusableName(
                where, f"is a name this computer's filesystem cannot hold ({e.strerror})"
            )
        return e

    def _open_dir(self, dir_fd: int, name: str, where: str) -> int:
        try:
            return os.open(name, _DIR, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise
            raise self._classify(e, dir_fd, name, where) from None

    @contextmanager
    def _dir(
        self,
        parts: list[str],
        *,
        create: bool = False,
        created: list[tuple[str, os.stat_result]] | None = None,
    ) -> Iterator[int]:
        """The descriptor of the folder ``parts``, walked from the root without following links.

        With ``create``, missing folders are made (each is opened again with ``O_NOFOLLOW``
        after ``mkdir``, so a symlink raced in its place is refused) and listed in ``created``.

        Raises:
            FileNotFoundError: a component is missing (and not ``create``).
            UnsafePath: a component is a symlink or a file.
            UnusableName: a component's name cannot exist here.
        """
        fd = self._open_root()
        try:
            for i, name in enumerate(parts):
                where = _join(parts[: i + 1])
                try:
                    nxt = self._open_dir(fd, name, where)
                except FileNotFoundError:
                    if not create:
                        raise
                    self._check_length(where)
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # raced: the open below judges it
                    except OSError as e:
                        raise self._classify(e, fd, name, where) from None
                    else:
                        if created is not None:
                            created.append((where, os.stat(name, dir_fd=fd, follow_symlinks=False)))
                    nxt = self._open_dir(fd, name, where)
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def _parent(self, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent folder, final name) of a non-root path."""
        parts = split(rel)
        if not parts:
            raise UnsafePath("", "is the sync folder itself, not a path inside it")
        with self._dir(parts[:-1], create=create) as fd:
            yield fd, parts[-1]

    def _check_length(self, rel: str) -> None:
        """Refuse a path whose absolute form is longer than the system's PATH_MAX: other
        programs (and the indexer) could not reach it."""
        total = self._root_bytes + 1 + len(rel.encode("utf-8", "surrogateescape")) + 1
        if total > self.path_max:
            raise UnusableName(
                rel,
                f"would make a path of {total} bytes here, longer than this system allows ({self.path_max})",
            )

    def _check_name(self, dir_fd: int, name: str, where: str) -> None:
        try:
            name_max = os.fpathconf(dir_fd, "PC_NAME_MAX")
        except (OSError, ValueError):
            name_max = 255
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > name_max:
            raise UnusableName(
                where,
                f"is a name of {size} bytes; this computer's filesystem holds at most {name_max}",
            )

    # -- looking -------------------------------------------------------------------------
    def lstat(self, rel: str) -> os.stat_result:
        """``os.lstat`` of a path whose parents are real folders (the root for "").

        Raises:
            FileNotFoundError: it (or a parent) is missing.
            UnsafePath: a parent is a symlink or a file.
        """
        parts = split(rel)
        if not parts:
            with self._dir([]) as fd:
                return os.fstat(fd)
        with self._parent(rel) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def listdir(self, rel: str) -> list[str]:
        """The names in a folder (the root for ""), reached without following symlinks.

        Raises:
            FileNotFoundError: it is missing.
            UnsafePath: it or a parent is a symlink or a file.
        """
        with self._dir(split(rel)) as fd:
            return os.listdir(fd)

    def lexists(self, rel: str) -> bool:
        """Something (even a symlink) is at ``rel``; raises UnsafePath if a parent is unsafe."""
        try:
            self.lstat(rel)
        except FileNotFoundError:
            return False
        return True

    def check_writable(self, rel: str) -> None:
        """Could a file or folder be created at ``rel``? Checks without changing anything: every
        existing parent is a real folder, and every missing name fits this filesystem.

        Raises:
            UnsafePath, UnusableName: it could not (or must not) be written.
        """
        parts = split(rel)
        self._check_length(rel)
        fd = self._open_root()
        try:
            for i, name in enumerate(parts):
                where = _join(parts[: i + 1])
                self._check_name(fd, name, where)
                if i == len(parts) - 1:
                    return
                try:
                    nxt = self._open_dir(fd, name, where)
                except FileNotFoundError:
                    for j in range(i + 1, len(parts)):  # the rest would be created here
                        self._check_name(fd, parts[j], _join(parts[: j + 1]))
                    return
                os.close(fd)
                fd = nxt
        finally:
            os.close(fd)

    def _open_final(self, rel: str) -> int:
        """A read-only descriptor of ``rel`` itself (non-blocking: a FIFO cannot hang us)."""
        with self._parent(rel) as (dir_fd, name):
            try:
                return os.open(name, _READ, dir_fd=dir_fd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise UnsafePath(
                        rel, "is a symlink (nothing is read or changed through it)"
                    ) from None
                raise

    def open_read(self, rel: str) -> BinaryIO:
        """Open a regular file for reading (for uploads); never through a symlink.

        Raises:
            FileNotFoundError: it is gone.
            UnsafePath: it or a parent is a symlink, or it is not a regular file.
        """
        fd = self._open_final(rel)
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise UnsafePath(rel, "is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    # -- changing ------------------------------------------------------------------------
    def makedirs(self, rel: str) -> list[tuple[str, os.stat_result]]:
        """Create the folder ``rel`` and any missing parents; returns (path, stat) of each made."""
        created: list[tuple[str, os.stat_result]] = []
        with self._dir(split(rel), create=True, created=created):
            pass
        return created

    def create_temp(self, rel: str, *, mode: int = 0o666) -> TempFile:
        """A new empty temporary file beside ``rel`` (whose parent must exist), to be renamed
        onto ``rel`` by ``TempFile.commit``. ``mode`` is filtered by the umask, as for any new file.

        Raises:
            FileNotFoundError: the parent folder is missing.
            UnsafePath, UnusableName: ``rel`` cannot be written here.
        """
        parts = split(rel)
        if not parts:
            raise UnsafePath("", "is the sync folder itself, not a file inside it")
        self._check_length(rel)
        with self._dir(parts[:-1]) as parent:
            dir_fd = os.dup(parent)
        try:
            self._check_name(dir_fd, parts[-1], rel)
            for _ in range(8):  # a clash of 64 random bits: try again
                name = temp_name()
                try:
                    fd = os.open(name, _NEW, mode, dir_fd=dir_fd)
                except FileExistsError:
                    continue
                return TempFile(self, rel, parts, dir_fd, name, fd)
            raise FileExistsError(errno.EEXIST, "no free temporary name", rel)
        except BaseException:
            os.close(dir_fd)
            raise

    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (whose parent must exist); never replaces anything at ``dst``.

        Raises:
            FileNotFoundError: ``src`` or ``dst``'s parent is missing.
            FileExistsError: something is at ``dst``.
            UnsafePath, UnusableName: either side cannot be used.
        """
        self._check_length(dst)
        with self._parent(src) as (src_fd, src_name), self._parent(dst) as (dst_fd, dst_name):
            self._check_name(dst_fd, dst_name, dst)
            try:
                os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(errno.EEXIST, "already exists", dst)
            try:
                os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as e:
                if e.errno in _BAD_NAME:
                    raise UnusableName(
                        dst, f"is a name this computer's filesystem cannot hold ({e.strerror})"
                    ) from None
                raise

    def unlink(self, rel: str) -> None:
        """Delete a file (or a symlink itself, never what it points to)."""
        with self._parent(rel) as (fd, name):
            os.unlink(name, dir_fd=fd)

    def rmdir(self, rel: str) -> None:
        """Delete an empty folder (a symlink in its place raises UnsafePath)."""
        with self._parent(rel) as (fd, name):
            try:
                os.rmdir(name, dir_fd=fd)
            except NotADirectoryError as e:
                raise self._classify(e, fd, name, rel) from None

    def set_mode(self, rel: str, mode: int) -> os.stat_result:
        """chmod a regular file or folder (never through or onto a symlink); returns its new stat.

        Raises:
            FileNotFoundError: it is gone.
            UnsafePath: it or a parent is a symlink, or it is neither a file nor a folder.
        """
        fd = self._open_final(rel)
        try:
            st = os.fstat(fd)
            if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
                raise UnsafePath(rel, "is neither a file nor a folder")
            os.fchmod(fd, mode)
            return os.fstat(fd)
        finally:
            os.close(fd)


class TempFile:
    """A temporary file being written beside its target; ``commit`` renames it into place.

    Use as a context manager: leaving it without ``commit`` removes the temporary file.
    """

    def __init__(
        self, fs: SafeFS, rel: str, parts: list[str], dir_fd: int, name: str, fd: int
    ) -> None:
        self.fs = fs
        self.rel = rel
        self._parts = parts
        self.dir_fd = dir_fd
        self.name = name
        self.fd = fd
        self._done = False

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_mode(self, mode: int) -> None:
        """chmod the temporary file before it is renamed into place."""
        os.fchmod(self.fd, mode)

    def commit(
        self, check: Callable[[os.stat_result | None], None] | None = None
    ) -> os.stat_result:
        """fsync, then rename onto the target and return the target's new stat.

        The parent folder must still be the one reached from the root (not moved elsewhere,
        nor replaced by a symlink meanwhile); ``check`` sees the target's current lstat (None
        if absent) right before the rename and raises to keep it.

        Raises:
            UnsafePath: the parent folder changed while the file was written.
            UnusableName: the final name cannot exist here.
        """
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        moved = UnsafePath(
            _join(self._parts[:-1]),
            "changed while a file in it was written (it will be tried again)",
        )
        try:
            with self.fs._dir(self._parts[:-1]) as now:
                if not _same_dir(os.fstat(now), os.fstat(self.dir_fd)):
                    raise moved
        except FileNotFoundError:
            raise moved from None
        final = self._parts[-1]
        try:
            current: os.stat_result | None = os.stat(
                final, dir_fd=self.dir_fd, follow_symlinks=False
            )
        except FileNotFoundError:
            current = None
        except OSError as e:
            raise self.fs._classify(e, self.dir_fd, final, self.rel) from None
        if check is not None:
            check(current)
        if current is not None and stat_mod.S_ISDIR(current.st_mode):
            raise UnusableName(self.rel, "is a folder here, not a file")
        try:
            os.rename(self.name, final, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as e:
            raise self.fs._classify(e, self.dir_fd, final, self.rel) from None
        self._done = True
        return os.stat(final, dir_fd=self.dir_fd, follow_symlinks=False)

    def close(self) -> None:
        """Remove the temporary file unless committed; release the descriptors."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dir_fd >= 0:
            if not self._done:
                try:
                    os.unlink(self.name, dir_fd=self.dir_fd)
                except FileNotFoundError:
                    pass
            os.close(self.dir_fd)
            self.dir_fd = -1
