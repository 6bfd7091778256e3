"""A job: model, data, output folder and options, and everything both runners set up from it.

:func:`prepare` resolves the model, opens the reader, checks the input mapping against the
model, and opens (or resumes) the manifest. The local and the Ray runner differ only in how
the pending shards' batches reach model instances.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from headrace.batch.columns import InputMapper, load_hook
from headrace.batch.dataset import DataSpec, Reader
from headrace.batch.manifest import Fingerprint, Manifest
from headrace.batch.readers import open_reader
from headrace.batch.writers import ShardWriter, make_writer
from headrace.errors import InvalidInput
from headrace.repository.resolve import (
    DEFAULT_BATCH_SIZE,
    ModelSource,
    ResolvedModel,
    resolve_model,
)
from headrace.types import TensorSpec

__all__ = ["Job", "JobOptions", "Prepared", "make_mapper", "prepare"]


@dataclass(frozen=True)
class JobOptions:
    """How a job runs. ``shard_size`` 0 means 64 batches per shard; ``outputs`` () means all.

    ``batch_size`` 0 takes :data:`~headrace.repository.resolve.DEFAULT_BATCH_SIZE`, or the
    model's ``max_batch_size`` when that is smaller (:func:`prepare` fills it in).
    ``instances`` 0 and ``device`` "" take the model's ``instance_group``, as serving does.
    """

    batch_size: int = 0
    shard_size: int = 0
    instances: int = 0
    num_buffers: int = 2
    device: str = ""
    readers: int = 2
    format: str = "parquet"
    outputs: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    preprocess: str = ""
    value_range: tuple[float, float] = (0.0, 1.0)
    overwrite: bool = False
    progress: bool = True

    @property
    def rows_per_shard(self) -> int:
        return self.shard_size or self.batch_size * 64

    def check(self) -> None:
        """Refuse nonsensical numbers, naming the option."""
        for name in ("num_buffers", "readers"):
            if getattr(self, name) < 1:
                raise InvalidInput(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("batch_size", "shard_size", "instances"):
            if getattr(self, name) < 0:
                raise InvalidInput(
                    f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class Job:
    """One ``headrace run``: plain data, picklable (Ray workers rebuild what they need)."""

    model: ModelSource
    data: DataSpec
    out_dir: str
    options: JobOptions = field(default_factory=JobOptions)


@dataclass
class Prepared:
    """What a runner needs, opened and checked."""

    job: Job
    model: ResolvedModel
    reader: Reader
    mapper: InputMapper
    writer: ShardWriter
    manifest: Manifest
    outputs: tuple[str, ...]

    def close(self) -> None:
        self.reader.close()
        self.model.cleanup()


def make_mapper(options: JobOptions, inputs: Sequence[TensorSpec]) -> InputMapper:
    """The batch -> model inputs mapping (also rebuilt inside each Ray task)."""
    hook = load_hook(options.preprocess) if options.preprocess else None
    return InputMapper(inputs, rename=dict(options.rename), preprocess=hook)


def prepare(job: Job) -> Prepared:
    """Resolve, open and check everything; the manifest says which shards remain.

    The returned ``Prepared.job`` has its batch size filled in; runners use that one.
    """
    job.options.check()
    model = resolve_model(job.model, job.options.batch_size)
    try:
        if not job.options.batch_size:
            size = min(DEFAULT_BATCH_SIZE, model.config.max_batch_size)
            job = replace(job, options=replace(job.options, batch_size=size))
        options = job.options
        reader = open_reader(job.data)
        outputs = _selected_outputs(model, options.outputs)
        mapper = make_mapper(options, model.inputs)
        fingerprint = Fingerprint.of(
            model=model.fingerprint(),
            input=json.dumps([reader.fingerprint(), asdict(job.data)], sort_keys=True),
            options=json.dumps(
                [
                    options.format,
                    options.rows_per_shard,
                    outputs,
                    options.rename,
                    options.preprocess,
                    options.value_range,
                ]
            ),
        )
        manifest = Manifest.open(
            job.out_dir,
            fingerprint,
            num_rows=reader.num_rows,
            shard_size=options.rows_per_shard,
            format=options.format,
            overwrite=options.overwrite,
        )
        writer = make_writer(options.format, job.out_dir, options.value_range)
    except BaseException:
        model.cleanup()
        raise
    return Prepared(job, model, reader, mapper, writer, manifest, outputs)


def _selected_outputs(model: ResolvedModel, wanted: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(spec.name for spec in model.outputs)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise InvalidInput(
            f"model '{model.name}' has no outputs {unknown} (outputs: {list(names)})"
        )
    return wanted or names
