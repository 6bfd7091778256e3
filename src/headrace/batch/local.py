"""The local runner: reader threads -> model instances -> a writer thread, all bounded.

    shards ─► reader threads ─► [batches, bounded] ─► dispatcher ─► ModelInstance x N
                (read, preprocess, map to inputs)       (main thread;  (N-way pipelines)
                                                         ≤ N·(B+1) in flight)
              writer thread ◄─ [results, bounded] ◄───────────┘
              (gather shards, write atomically, record in the manifest, progress)

Every queue is bounded and the dispatcher keeps at most ``instances * (num_buffers + 1)``
batches in flight (the engine's :func:`~headrace.engine.inflight.drive_in_flight`, round-robin
over the instances, passing each batch's outputs to the writer in order), so a slow model (or
a slow disk) stops the readers instead of filling memory. The first error anywhere stops the
job: threads drain their queues and exit, shards already written stay recorded, and a rerun
resumes from there.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from headrace.batch.collector import ShardCollector
from headrace.batch.job import Job, Prepared, prepare
from headrace.batch.model import make_instances, plan_job_instances
from headrace.batch.progress import JobProgress
from headrace.engine.inflight import drive_in_flight
from headrace.engine.instance import ModelInstance

__all__ = ["RunSummary", "run_local"]


@dataclass(frozen=True)
class RunSummary:
    """What a run did: rows computed now, shards written now and skipped as already done."""

    out_dir: str
    rows: int
    shards_written: int
    shards_skipped: int
    seconds: float
    instances: int = 0
    """Model instances (local) or actors (Ray) the run used."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Work:
    """One batch on its way to (or back from) a model instance."""

    shard: int
    row_ids: np.ndarray
    arrays: dict[str, Any]


_DONE = object()  # a reader (or the dispatcher) has nothing more to send


def run_local(job: Job) -> RunSummary:
    """Run (or resume) ``job`` on this machine; returns when every shard is written."""
    prepared = prepare(job)
    try:
        return _LocalRunner(prepared).run()
    finally:
        prepared.close()


class _LocalRunner:
    def __init__(self, prepared: Prepared) -> None:
        self.p = prepared
        options = prepared.job.options
        self.options = options
        self.pending = prepared.manifest.pending()
        self.specs = plan_job_instances(
            prepared.model, count=options.instances, device=options.device
        )
        depth = len(self.specs) * (options.num_buffers + 1)
        self.depth = depth
        self.shards: queue.SimpleQueue[int] = queue.SimpleQueue()
        for shard in self.pending:
            self.shards.put(shard)
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=2 * depth)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=2 * depth)
        self.readers_done = 0  # _DONE markers taken from ``batches``
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._error_lock = threading.Lock()

    def run(self) -> RunSummary:
        started = time.monotonic()
        manifest = self.p.manifest
        skipped = manifest.num_shards - len(self.pending)
        todo = sum(stop - start for start, stop in map(manifest.shard_range, self.pending))
        progress = JobProgress(
            manifest.num_rows,
            manifest.num_rows - todo,
            enabled=self.options.progress,
            device=", ".join(sorted({spec.device for spec in self.specs})),
        )
        collector = ShardCollector(manifest, self.p.writer, self.p.outputs, progress.advance)
        if self.pending:
            with progress:
                self._run(collector)
        if self.error is not None:
            raise self.error
        return RunSummary(
            self.p.job.out_dir,
            todo,
            collector.shards_written,
            skipped,
            time.monotonic() - started,
            len(self.specs),
        )

    def _run(self, collector: ShardCollector) -> None:
        options = self.options
        instances = make_instances(self.p.model, self.specs, num_buffers=options.num_buffers)
        readers = [
            threading.Thread(target=self._read, name=f"headrace-read-{i}", daemon=True)
            for i in range(min(options.readers, len(self.pending)))
        ]
        writer = threading.Thread(
            target=self._write, args=(collector,), name="headrace-write", daemon=True
        )
        for thread in [*readers, writer]:
            thread.start()
        try:
            self._dispatch(instances, len(readers))
        finally:
            self.results.put(_DONE)
            writer.join()
            for instance in instances:
                instance.close(drain=self.error is None)

    def _read(self) -> None:
        """Reader thread: whole shards, batch by batch, mapped to model inputs."""
        reader, mapper, manifest = self.p.reader, self.p.mapper, self.p.manifest
        try:
            while not self.stop.is_set():
                try:
                    shard = self.shards.get_nowait()
                except queue.Empty:
                    return
                start, stop = manifest.shard_range(shard)
                for batch in reader.iter_batches(start, stop, self.options.batch_size):
                    if self.stop.is_set():
                        return
                    self.batches.put(_Work(shard, batch.row_ids, mapper(batch)))
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.batches.put(_DONE)

    def _dispatch(self, instances: list[ModelInstance], readers: int) -> None:
        """Main thread: round-robin over instances, at most ``depth`` batches in flight."""
        turn = itertools.count()

        def submit(work: _Work) -> Future[Any]:
            return instances[next(turn) % len(instances)].submit(work.arrays)

        try:
            drive_in_flight(self._incoming(readers), submit, self.depth, self._complete)
        except BaseException as exc:
            self._fail(exc)
        while self.readers_done < readers:  # drain, so that blocked readers can finish
            if self.batches.get() is _DONE:
                self.readers_done += 1

    def _incoming(self, readers: int) -> Iterator[_Work]:
        """The readers' batches until every reader is done or the job stops."""
        while self.readers_done < readers and not self.stop.is_set():
            item = self.batches.get()
            if item is _DONE:
                self.readers_done += 1
            elif not self.stop.is_set():
                yield item

    def _complete(self, work: _Work, outputs: Any) -> None:
        """A batch's outputs, in order: on to the writer."""
        if not self.stop.is_set():
            self.results.put(_Work(work.shard, work.row_ids, outputs))

    def _write(self, collector: ShardCollector) -> None:
        """Writer thread: gather shards and write each once complete."""
        while True:
            item = self.results.get()
            if item is _DONE:
                return
            if self.stop.is_set():
                continue
            try:
                collector.add(item.shard, item.row_ids, item.arrays)
            except BaseException as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self.error is None:
                self.error = exc
        self.stop.set()
