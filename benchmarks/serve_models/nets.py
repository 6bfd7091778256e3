"""The benchmark's networks, defined once for every system that runs them.

This file is imported by three interpreters: the benchmark itself (repository generation and
direct in-process runs), the Triton python-backend ``model.py`` (copied next to it in each
version directory) and the PyTriton server (Triton's own venv). So it needs torch only and
nothing from headrace. Weights come from a fixed seed and travel as a ``state_dict`` file.

| name     | layers                                   | why                                   |
| -------- | ---------------------------------------- | ------------------------------------- |
| identity | none: output = input (FP32 [16])         | pure serving overhead                 |
| mlp      | 64 -> 256 -> 128 -> 64 -> 1, sigmoid     | the seed workload (light)             |
| compute  | 512 -> 4096 -> 4096 -> 4096 -> 16        | compute-bound: batch 16 takes >=20 ms |
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NETS", "NetSpec", "build"]


@dataclass(frozen=True)
class NetSpec:
    """Layer widths (first = input features, last = output features) and the final activation."""

    widths: tuple[int, ...]
    final: str = ""  # "" or "sigmoid"

    @property
    def in_features(self) -> int:
        return self.widths[0]

    @property
    def out_features(self) -> int:
        return self.widths[-1]

    @property
    def is_identity(self) -> bool:
        return len(self.widths) == 1


NETS = {
    "identity": NetSpec((16,)),
    "mlp": NetSpec((64, 256, 128, 64, 1), final="sigmoid"),
    "compute": NetSpec((512, 4096, 4096, 4096, 16)),
}


def build(name: str, seed: int = 0):  # type: ignore[no-untyped-def]
    """An eval-mode torch module for ``name`` (weights drawn from ``seed``)."""
    import torch

    if name not in NETS:
        raise KeyError(f"unknown network {name!r}; known: {sorted(NETS)}")
    spec = NETS[name]
    torch.manual_seed(seed)
    layers: list = []
    for i, (width_in, width_out) in enumerate(zip(spec.widths, spec.widths[1:])):
        if i:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(width_in, width_out))
    if spec.final == "sigmoid":
        layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers).eval() if layers else torch.nn.Identity().eval()
