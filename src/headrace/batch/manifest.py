"""The manifest: which shards of a job are finished, and what job produced them.

``OUT/manifest.json`` is the single source of truth for resuming. It is replaced atomically
(temp file, fsync, rename) after every shard, so after a crash or ``kill -9`` it lists exactly
the shards whose files were completely written. It also holds the job's fingerprint, one
digest each for the model, the input and the options that shape the output; rerunning with
any of them changed is refused unless the caller asks to overwrite, or no shard is finished
yet (a run that failed before writing anything does not block the corrected command).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field

from headrace.errors import InvalidInput
from headrace.files import TEMP_MARK, atomic_write_bytes

__all__ = ["MANIFEST", "Fingerprint", "Manifest", "ShardRecord"]

MANIFEST = "manifest.json"
_VERSION = 1


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """Digests of what determines the results: the model, the input and the output options."""

    model: str
    input: str
    options: str

    @classmethod
    def of(cls, *, model: str, input: str, options: str) -> Fingerprint:
        return cls(_digest(model), _digest(input), _digest(options))

    def changes(self, other: Fingerprint) -> list[str]:
        """The parts that differ from ``other`` (``model``, ``input``, ``options``)."""
        return [
            name
            for name in ("model", "input", "options")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard: its row range and the files (relative to the output folder)."""

    index: int
    start: int
    stop: int
    files: list[str] = field(default_factory=list)


class Manifest:
    """The finished shards of one job in ``out_dir``; ``record`` is thread-safe."""

    def __init__(
        self,
        out_dir: str,
        fingerprint: Fingerprint,
        *,
        num_rows: int,
        shard_size: int,
        format: str,
        shards: dict[int, ShardRecord] | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.fingerprint = fingerprint
        self.num_rows = num_rows
        self.shard_size = shard_size
        self.format = format
        self.shards: dict[int, ShardRecord] = dict(shards or {})
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST)

    @property
    def num_shards(self) -> int:
        return -(-self.num_rows // self.shard_size) if self.num_rows else 0

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(start + self.shard_size, self.num_rows)

    def pending(self) -> list[int]:
        """Shards not finished yet, in order."""
        return [i for i in range(self.num_shards) if i not in self.shards]

    def complete(self) -> bool:
        return not self.pending()

    def record(self, shard: ShardRecord) -> None:
        """Mark a shard finished (its files are already in place) and save the manifest."""
        with self._lock:
            self.shards[shard.index] = shard
            self.save()

    def save(self) -> None:
        document = {
            "version": _VERSION,
            "fingerprint": asdict(self.fingerprint),
            "num_rows": self.num_rows,
            "shard_size": self.shard_size,
            "format": self.format,
            "complete": self.complete(),
            "shards": [asdict(self.shards[i]) for i in sorted(self.shards)],
        }
        data = json.dumps(document, indent=1).encode("utf-8")
        atomic_write_bytes(self.path, data)

    @classmethod
    def load(cls, out_dir: str) -> Manifest | None:
        """The manifest in ``out_dir``, or None when there is none."""
        path = os.path.join(out_dir, MANIFEST)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
            shards = {s["index"]: ShardRecord(**s) for s in document["shards"]}
            return cls(
                out_dir,
                Fingerprint(**document["fingerprint"]),
                num_rows=int(document["num_rows"]),
                shard_size=int(document["shard_size"]),
                format=str(document["format"]),
                shards=shards,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"cannot read manifest {path!r}: {exc}; rerun with --overwrite"
            ) from exc

    @classmethod
    def open(
        cls,
        out_dir: str,
        fingerprint: Fingerprint,
        *,
        num_rows: int,
        shard_size: int,
        format: str,
        overwrite: bool = False,
    ) -> Manifest:
        """Resume the job in ``out_dir``, or start it; refuses a different job's output."""
        fresh = cls(out_dir, fingerprint, num_rows=num_rows, shard_size=shard_size, format=format)
        existing = cls._existing(out_dir, overwrite)
        if existing is not None:
            changed = existing.fingerprint.changes(fingerprint)
            layout = (existing.num_rows, existing.shard_size, existing.format)
            if layout != (num_rows, shard_size, format) and "options" not in changed:
                changed.append("options")
            if not changed:
                existing.remove_stale_temporaries()
                return existing
            # A job that finished no shard (it failed at its first batch) has nothing to lose.
            if not overwrite and existing.shards:
                raise InvalidInput(
                    f"{out_dir!r} holds results of a different job (changed: {', '.join(changed)}); "
                    "pass --overwrite to replace them or choose another --out"
                )
            existing.remove_files()
            existing.remove_stale_temporaries()
        os.makedirs(out_dir, exist_ok=True)
        fresh.save()
        return fresh

    def remove_stale_temporaries(self) -> None:
        """Delete temp files a killed run left behind (one job writes a folder at a time)."""
        for folder, _, files in os.walk(self.out_dir):
            for name in files:
                if name.startswith(".") and TEMP_MARK in name:
                    os.remove(os.path.join(folder, name))

    @classmethod
    def _existing(cls, out_dir: str, overwrite: bool) -> Manifest | None:
        try:
            return cls.load(out_dir)
        except InvalidInput:
            if not overwrite:
                raise
            return None

    def remove_files(self) -> None:
        """Delete every file this manifest lists, then the manifest itself."""
        for shard in self.shards.values():
            for relative in shard.files:
                path = os.path.join(self.out_dir, relative)
                if os.path.exists(path):
                    os.remove(path)
        if os.path.exists(self.path):
            os.remove(self.path)
        self.shards.clear()
