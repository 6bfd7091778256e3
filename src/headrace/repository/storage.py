"""Where a model repository lives: a local directory or any fsspec URL.

A repository root may be a plain path, ``file://``, ``memory://``, ``s3://`` or ``gs://``. All
reads and writes go through one :class:`Storage`, so the repository code never branches on the
protocol. Backends need real files, so :meth:`Storage.localize` copies a remote directory into
a local cache keyed by the URL and the listing (names, sizes, modification times): a changed
file gives a fresh copy, an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from headrace.errors import InvalidConfig
from headrace.files import atomic_write_bytes

__all__ = ["Storage", "default_cache_dir"]

_CACHE_ENV = "HEADRACE_CACHE_DIR"


def default_cache_dir() -> str:
    """``$HEADRACE_CACHE_DIR`` or ``<tmp>/headrace-cache``: where remote versions are copied."""
    return os.environ.get(_CACHE_ENV) or os.path.join(tempfile.gettempdir(), "headrace-cache")


class Storage:
    """One repository root on one filesystem; paths given to methods are relative to it."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        url = os.fspath(root)
        if not url:
            raise InvalidConfig("a repository root must be a path or URL, got ''")
        try:
            fs, path = url_to_fs(url, **dict(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise InvalidConfig(f"cannot open repository {url!r}: {exc}") from exc
        self.fs: fsspec.AbstractFileSystem = fs
        self.is_local = "file" in _protocols(fs)
        self.root = os.path.abspath(path) if self.is_local else path.rstrip("/")
        self.cache_dir = cache_dir or default_cache_dir()

    # -- names -----------------------------------------------------------------------------

    def full(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root (no protocol)."""
        clean = [p.strip("/") for p in parts if p]
        if self.is_local:
            return os.path.join(self.root, *clean)
        return posixpath.join(self.root, *clean)

    def url(self, *parts: str) -> str:
        """A string any fsspec user can open: a plain path when local, else a full URL."""
        path = self.full(*parts)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    # -- queries ---------------------------------------------------------------------------

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.full(*parts)))

    def isdir(self, *parts: str) -> bool:
        return bool(self.fs.isdir(self.full(*parts)))

    def isfile(self, *parts: str) -> bool:
        return bool(self.fs.isfile(self.full(*parts)))

    def list_dirs(self, *parts: str) -> list[str]:
        """Names of the sub-directories of ``parts``, sorted; [] when it does not exist."""
        return sorted(name for name, kind in self._children(*parts) if kind == "directory")

    def list_files(self, *parts: str) -> list[str]:
        """Names of the plain files directly in ``parts``, sorted."""
        return sorted(name for name, kind in self._children(*parts) if kind != "directory")

    def _children(self, *parts: str) -> list[tuple[str, str]]:
        path = self.full(*parts)
        if not self.fs.isdir(path):
            return []
        self.fs.invalidate_cache(path)
        found = []
        for info in self.fs.ls(path, detail=True):
            name = posixpath.basename(str(info["name"]).rstrip("/"))
            if name and not name.startswith("."):
                found.append((name, str(info.get("type", "file"))))
        return found

    def fingerprint(self, *parts: str) -> str:
        """A digest of every file under ``parts`` (name, size, mtime): changes when any does."""
        path = self.full(*parts)
        digest = hashlib.sha256(self.url(*parts).encode())
        if self.fs.isdir(path):
            self.fs.invalidate_cache(path)
            listing = self.fs.find(path, detail=True)
            for name in sorted(listing):
                info = listing[name]
                rel = posixpath.relpath(str(info["name"]), path)
                digest.update(f"\0{rel}\0{info.get('size')}\0{_mtime(info)}".encode())
        return digest.hexdigest()

    # -- reads and writes ------------------------------------------------------------------

    def read_bytes(self, *parts: str) -> bytes:
        return bytes(self.fs.cat_file(self.full(*parts)))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write a whole file; local writes are atomic (temp file + rename)."""
        path = self.full(*parts)
        self.makedirs(*parts[:-1])
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        atomic_write_bytes(path, data)

    def makedirs(self, *parts: str) -> None:
        self.fs.makedirs(self.full(*parts), exist_ok=True)

    def put_dir(self, local_dir: str, *parts: str) -> None:
        """Upload the files of a local directory into ``parts`` (created when missing)."""
        for base, _dirs, files in os.walk(local_dir):
            rel = os.path.relpath(base, local_dir)
            rel_parts = [] if rel == "." else rel.split(os.sep)
            for name in files:
                with open(os.path.join(base, name), "rb") as handle:
                    self.write_bytes(handle.read(), *parts, *rel_parts, name)

    def remove(self, *parts: str) -> None:
        """Remove a file or a whole directory tree; a missing path is not an error."""
        path = self.full(*parts)
        if self.is_local:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
            return
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        self.fs.invalidate_cache()

    # -- localisation ----------------------------------------------------------------------

    def localize(self, *parts: str) -> str:
        """A local directory holding the files of ``parts``.

        Local repositories answer their own path. Remote directories are copied once into
        ``cache_dir/<digest>`` where the digest covers the URL and every file's size and mtime,
        so an unchanged version is never downloaded twice and a changed one never served stale.
        """
        if self.is_local:
            return self.full(*parts)
        if not self.isdir(*parts):
            raise InvalidConfig(f"cannot localise {self.url(*parts)!r}: not a directory")
        target = os.path.join(self.cache_dir, self.fingerprint(*parts)[:32])
        if os.path.isdir(target):
            return target
        os.makedirs(self.cache_dir, exist_ok=True)
        staging = tempfile.mkdtemp(dir=self.cache_dir, prefix=".partial-")
        try:
            self._download(self.full(*parts), staging)
            os.replace(staging, target)
        except OSError:
            # Another process finished the same copy first; theirs is identical.
            shutil.rmtree(staging, ignore_errors=True)
            if not os.path.isdir(target):
                raise
        return target

    def _download(self, remote: str, local: str) -> None:
        for name, info in sorted(self.fs.find(remote, detail=True).items()):
            if info.get("type") == "directory":
                continue
            rel = posixpath.relpath(str(info["name"]), remote)
            dest = os.path.join(local, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as handle:
                handle.write(self.fs.cat_file(name))

    def __repr__(self) -> str:
        return f"Storage({self.url()!r})"


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _mtime(info: Mapping[str, Any]) -> str:
    for key in ("mtime", "LastModified", "updated", "last_modified", "created", "ETag", "etag"):
        if info.get(key) is not None:
            return str(info[key])
    return ""
