"""Write the benchmark's model repository (Triton layout) with headrace's Python API.

Every network goes in as a Triton python-backend ``model.py`` (``<net>_python``), which both
``headrace serve`` and NVIDIA Triton load from this very directory, and as TorchScript
(``<net>_torchscript``) and ONNX (``<net>_onnx``), which only headrace serves here (the Triton
on this machine has the python backend only). All share one batching policy and instance count.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import nets

from headrace.repository.api import ModelRepository
from headrace.types import DataType

__all__ = ["FORMATS", "Batching", "Variant", "variants", "weights_file", "write_repository"]

FORMATS = ("python", "torchscript", "onnx")
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Batching:
    """The serving policy every system gets: dynamic batching and instance count."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 100
    instances: int = 1


@dataclass(frozen=True)
class Variant:
    """One served model: a network in one format, with its tensor names."""

    net: str
    format: str

    @property
    def name(self) -> str:
        return f"{self.net}_{self.format}"

    @property
    def input_name(self) -> str:
        return "INPUT__0" if self.format == "torchscript" else "INPUT0"

    @property
    def output_name(self) -> str:
        return "OUTPUT__0" if self.format == "torchscript" else "OUTPUT0"

    @property
    def in_features(self) -> int:
        return nets.NETS[self.net].in_features


def variants(net_names: list[str], formats: list[str]) -> list[Variant]:
    """Every (network, format) pair asked for, checking both names."""
    for name in net_names:
        if name not in nets.NETS:
            raise ValueError(f"unknown model {name!r}; choose from {sorted(nets.NETS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {list(FORMATS)}")
    return [Variant(n, f) for n in net_names for f in formats]


def weights_file(root: str | Path, net: str) -> Path:
    """Where the python variant of ``net`` keeps its weights (PyTriton and direct reuse them)."""
    return Path(root) / f"{net}_python" / "1" / "weights.pt"


def write_repository(root: str | Path, chosen: list[Variant], batching: Batching) -> None:
    """Create ``root`` holding every variant in ``chosen``."""
    import torch

    repo = ModelRepository(str(root))
    for variant in chosen:
        spec = nets.NETS[variant.net]
        module = nets.build(variant.net)
        if variant.format == "python":
            entry = repo.add(
                variant.name,
                backend="python",
                max_batch_size=batching.max_batch_size,
                inputs=[("INPUT0", DataType.FP32, [spec.in_features])],
                outputs=[("OUTPUT0", DataType.FP32, [spec.out_features])],
            )
            source = "model_identity.py" if spec.is_identity else "model_torch.py"
            entry.add_version_file(1, "model.py", (_HERE / source).read_bytes())
            if not spec.is_identity:
                entry.add_version_file(1, "nets.py", (_HERE / "nets.py").read_bytes())
                torch.save(module.state_dict(), weights_file(root, variant.net))
                entry.config.set_parameter("net", variant.net)
        else:
            entry = repo.add(variant.name, max_batch_size=batching.max_batch_size)
            entry.export_version(
                module,
                input_shapes={variant.input_name: (None, spec.in_features)},
                output_names=[variant.output_name],
                format=variant.format,  # type: ignore[arg-type]
            )
        entry.config.set_dynamic_batching(max_queue_delay_us=batching.max_queue_delay_us)
        entry.config.clear_instance_groups()
        entry.config.add_instance_group(count=batching.instances, kind="cpu")


def remove(root: str | Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
