"""The examples repository (``headrace examples create DIR``): one model per backend.

| model            | backend      | tensors                                                  |
| ---------------- | ------------ | -------------------------------------------------------- |
| simple           | python       | INT32 INPUT0, INPUT1 [16] -> OUTPUT0 = a+b, OUTPUT1 = a-b |
| python_add       | python       | FP32 INPUT0, INPUT1 [4] -> sum, difference (no batching)  |
| identity_bytes   | python       | BYTES INPUT0 [-1] -> OUTPUT0, unchanged                   |
| mlp              | onnxruntime  | FP32 INPUT0 [64] -> OUTPUT0 [1], dynamic batching         |
| noise_remover    | onnxruntime  | FP32 INPUT0 [64] -> OUTPUT0 [64], dynamic batching        |
| mlp_torchscript  | pytorch      | FP32 INPUT__0 [64] -> OUTPUT__0 [1], dynamic batching     |
| snapshotter      | python       | FP32 update [2, 256] -> snapshot [2, 1024], a sequence per stream |
| strain_cleaner   | onnxruntime  | FP32 noisy [2, 1024] -> cleaned [2, 1024]                 |
| strain_detector  | onnxruntime  | FP32 strain [2, 1024] -> probability [1]                  |
| streaming_detector | ensemble   | update [2, 256] -> cleaned [2, 1024], probability [1]     |
| particlenet      | onnxruntime  | FP32 points [50, 2], features [50, 8], mask [50, 1] -> probabilities [2] |
| particlenet_torchscript | pytorch | the same tensors, the same weights                    |

The last four are the streaming detector pipeline: each client streams one second of two
channels sampled at 256 Hz (``update``) on its own sequence; the snapshotter keeps the last
four seconds of each stream and hands them to the cleaner, whose output goes out and on to
the detector (see :mod:`headrace.repository.snapshotter`). Everything is built locally from
fixed seeds in a few seconds; nothing is downloaded.

The two ``particlenet`` models are the seed's jet tagger (:mod:`headrace.repository.particlenet`),
the standard model for ``headrace bench scan``; they batch up to 256 jets.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import posixpath
import sys
from typing import Any

from headrace.errors import InvalidConfig
from headrace.repository.api import ModelRepository
from headrace.repository.example_sources import ADD_SUB_MODEL, IDENTITY_MODEL
from headrace.repository.export_bridge import ExportFormat
from headrace.types import DataType

__all__ = [
    "EXAMPLE_MODELS",
    "MARKER",
    "create_examples_repository",
    "holds_anything",
    "particlenet_input_shapes",
]

EXAMPLE_MODELS = (
    "identity_bytes",
    "mlp",
    "mlp_torchscript",
    "noise_remover",
    "particlenet",
    "particlenet_torchscript",
    "python_add",
    "simple",
    "snapshotter",
    "strain_cleaner",
    "strain_detector",
    "streaming_detector",
)

#: The streaming detector pipeline: two channels at 256 Hz, 4 s snapshots, 1 s updates.
STREAM_CHANNELS = 2
STREAM_SNAPSHOT = 1024
STREAM_UPDATE = 256
#: The seeds of its two torch models (``seeded(StrainCleaner, STREAM_CLEANER_SEED)``).
STREAM_CLEANER_SEED = 2
STREAM_DETECTOR_SEED = 3

_BATCH = 64  # max_batch_size of the torch examples
#: The seed of the ParticleNet examples (``seeded(ParticleNet, PARTICLENET_SEED)``).
PARTICLENET_SEED = 4
PARTICLENET_MAX_BATCH = 256


#: Written last by :func:`create_examples_repository`: what it wrote, so a rerun can tell an
#: unchanged examples tree (reused) from anything else (refused). Hidden, so not a model.
MARKER = ".headrace-examples.json"


def create_examples_repository(
    path: str | os.PathLike[str], *, force: bool = False
) -> ModelRepository:
    """Write every example model under ``path``.

    A directory that already holds the examples as this version of headrace wrote them,
    unchanged, is reused as it is, so the README's first command can run twice; anything
    else there is refused unless ``force`` (``--force``) replaces it.
    """
    repo = ModelRepository(path)
    if holds_anything(repo):
        if not force:
            difference = _difference_from_written(repo)
            if difference is None:
                return repo
            raise InvalidConfig(
                f"{repo.path!r} is not empty and does not hold the unchanged example models "
                f"({difference}); pass --force to replace what it holds, or choose an empty or "
                "new directory"
            )
        repo.delete()
    repo.storage.makedirs()
    _python_models(repo)
    _torch_models(repo)
    _streaming_pipeline(repo)
    _particlenet(repo)
    record = {"recipe": _recipe(), "files": _digests(repo)}
    repo.storage.write_bytes(json.dumps(record, indent=1, sort_keys=True).encode(), MARKER)
    return repo


def holds_anything(repo: ModelRepository) -> bool:
    """Whether the repository's directory exists with something visible in it."""
    return repo.storage.exists() and bool(repo.names() or repo.storage.list_files())


def _difference_from_written(repo: ModelRepository) -> str | None:
    """How ``repo`` differs from the examples this headrace writes, or None when it does not."""
    if not repo.storage.isfile(MARKER):
        return f"no {MARKER}: not written by 'headrace examples create', or interrupted"
    try:
        record = json.loads(repo.storage.read_bytes(MARKER))
        recipe, expected = record["recipe"], dict(record["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable {MARKER}: {exc}"
    if recipe != _recipe():
        return "written by another version of headrace"
    found = _digests(repo)
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            return f"{name} is missing"
        if name not in expected:
            return f"{name} is not an example file"
        if found[name] != expected[name]:
            return f"{name} was changed"
    return None


def _recipe() -> str:
    """A digest of the code that builds the examples: new code, new examples."""
    from headrace.repository import example_models, example_sources, snapshotter

    digest = hashlib.sha256()
    for module in (sys.modules[__name__], example_models, example_sources, snapshotter):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def _digests(repo: ModelRepository) -> dict[str, str]:
    """sha256 of every file under the root by '/'-separated relative name; hidden names and
    ``__pycache__`` are left out (serving python models may leave byte code behind)."""
    storage = repo.storage
    root = storage.full()
    digests: dict[str, str] = {}
    for name, info in storage.fs.find(root, detail=True).items():
        relative = posixpath.relpath(str(name), root)
        parts = relative.split("/")
        if info.get("type") == "directory" or any(
            part.startswith(".") or part == "__pycache__" for part in parts
        ):
            continue
        digests[relative] = hashlib.sha256(storage.read_bytes(*parts)).hexdigest()
    return digests


def _python_models(repo: ModelRepository) -> None:
    simple = repo.add(
        "simple",
        backend="python",
        max_batch_size=8,
        inputs=[("INPUT0", DataType.INT32, [16]), ("INPUT1", DataType.INT32, [16])],
        outputs=[("OUTPUT0", DataType.INT32, [16]), ("OUTPUT1", DataType.INT32, [16])],
    )
    simple.add_version_file(1, "model.py", ADD_SUB_MODEL.encode())

    add = repo.add(
        "python_add",
        backend="python",
        max_batch_size=0,
        inputs=[("INPUT0", DataType.FP32, [4]), ("INPUT1", DataType.FP32, [4])],
        outputs=[("OUTPUT0", DataType.FP32, [4]), ("OUTPUT1", DataType.FP32, [4])],
    )
    add.add_version_file(1, "model.py", ADD_SUB_MODEL.encode())

    identity = repo.add(
        "identity_bytes",
        backend="python",
        max_batch_size=8,
        inputs=[("INPUT0", DataType.BYTES, [-1])],
        outputs=[("OUTPUT0", DataType.BYTES, [-1])],
    )
    identity.add_version_file(1, "model.py", IDENTITY_MODEL.encode())


def _torch_models(repo: ModelRepository) -> None:
    from headrace.repository.example_models import MLP, NoiseRemover, seeded

    exports: tuple[tuple[str, Any, ExportFormat, tuple[str, str]], ...] = (
        ("mlp", seeded(MLP, 0), "onnx", ("INPUT0", "OUTPUT0")),
        ("noise_remover", seeded(NoiseRemover, 1), "onnx", ("INPUT0", "OUTPUT0")),
        ("mlp_torchscript", seeded(MLP, 0), "torchscript", ("INPUT__0", "OUTPUT__0")),
    )
    for name, module, fmt, (inp, out) in exports:
        entry = repo.add(name, max_batch_size=_BATCH)
        entry.export_version(module, input_shapes={inp: (None, 64)}, output_names=[out], format=fmt)
        entry.config.set_dynamic_batching(max_queue_delay_us=100)


def _streaming_pipeline(repo: ModelRepository) -> None:
    """snapshotter -> strain_cleaner -> strain_detector, as the ``streaming_detector`` ensemble."""
    from headrace.repository.example_models import StrainCleaner, StrainDetector, seeded
    from headrace.repository.snapshotter import add_snapshotter

    shape = (None, STREAM_CHANNELS, STREAM_SNAPSHOT)
    snapshotter = add_snapshotter(
        repo,
        channels=STREAM_CHANNELS,
        snapshot_size=STREAM_SNAPSHOT,
        update_size=STREAM_UPDATE,
    )
    cleaner = repo.add("strain_cleaner", max_batch_size=8)
    cleaner.export_version(
        seeded(StrainCleaner, STREAM_CLEANER_SEED),
        input_shapes={"noisy": shape},
        output_names=["cleaned"],
    )
    cleaner.config.set_dynamic_batching(max_queue_delay_us=100)
    detector = repo.add("strain_detector", max_batch_size=8)
    detector.export_version(
        seeded(StrainDetector, STREAM_DETECTOR_SEED),
        input_shapes={"strain": shape},
        output_names=["probability"],
    )
    detector.config.set_dynamic_batching(max_queue_delay_us=100)
    pipeline = repo.add("streaming_detector", platform="ensemble")
    pipeline.add_input(snapshotter.inputs["update"])
    pipeline.pipe(snapshotter.outputs["snapshot"], cleaner.inputs["noisy"])
    pipeline.pipe(cleaner.outputs["cleaned"], detector.inputs["strain"])
    pipeline.add_output(cleaner.outputs["cleaned"])
    pipeline.add_output(detector.outputs["probability"])
    pipeline.export_version(None)


def particlenet_input_shapes() -> dict[str, tuple[int | None, ...]]:
    """The ParticleNet examples' inputs, batch first (``None``)."""
    from headrace.repository.particlenet import COORDINATES, FEATURES, PARTICLES

    return {
        "points": (None, PARTICLES, COORDINATES),
        "features": (None, PARTICLES, FEATURES),
        "mask": (None, PARTICLES, 1),
    }


def _particlenet(repo: ModelRepository) -> None:
    """The jet tagger as ONNX and as TorchScript, from one seeded module."""
    from headrace.repository.example_models import seeded
    from headrace.repository.particlenet import ParticleNet

    module = seeded(ParticleNet, PARTICLENET_SEED)
    formats: tuple[tuple[str, ExportFormat], ...] = (
        ("particlenet", "onnx"),
        ("particlenet_torchscript", "torchscript"),
    )
    for name, fmt in formats:
        entry = repo.add(name, max_batch_size=PARTICLENET_MAX_BATCH)
        entry.export_version(
            module,
            input_shapes=particlenet_input_shapes(),
            output_names=["probabilities"],
            format=fmt,
        )
        entry.config.set_dynamic_batching(max_queue_delay_us=100)
