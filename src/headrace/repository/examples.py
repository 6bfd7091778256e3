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

import os
from typing import Any

from headrace.errors import InvalidConfig
from headrace.repository.api import ModelRepository
from headrace.repository.example_sources import ADD_SUB_MODEL, IDENTITY_MODEL
from headrace.repository.export_bridge import ExportFormat
from headrace.types import DataType

__all__ = ["EXAMPLE_MODELS", "create_examples_repository", "particlenet_input_shapes"]

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


def create_examples_repository(
    path: str | os.PathLike[str], *, force: bool = False
) -> ModelRepository:
    """Write every example model under ``path``; ``force`` replaces an existing repository."""
    repo = ModelRepository(path)
    if repo.storage.exists() and (repo.names() or repo.storage.list_files()):
        if not force:
            raise InvalidConfig(
                f"{repo.path!r} is not empty; pass force=True (--force) to replace it"
            )
        repo.delete()
    repo.storage.makedirs()
    _python_models(repo)
    _torch_models(repo)
    _streaming_pipeline(repo)
    _particlenet(repo)
    return repo


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
