"""Small torch modules behind the examples repository (imported only when torch is wanted).

They match the seed workloads: a 64 -> 256 -> 128 -> 64 -> 1 sigmoid classifier and a
64 -> 32 -> 16 -> 64 noise remover. Weights come from a fixed seed, so every examples
repository holds the same numbers.
"""

from __future__ import annotations

from headrace.errors import require

torch = require("torch", "torch")
nn = torch.nn

__all__ = ["MLP", "NoiseRemover", "seeded"]


class MLP(nn.Module):  # type: ignore[misc,name-defined]
    """64 -> 256 -> 128 -> 64 -> 1, ReLU between layers, sigmoid at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(64, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.layers(x)


class NoiseRemover(nn.Module):  # type: ignore[misc,name-defined]
    """64 -> 32 -> 16 -> 64: squeeze a signal through 16 features and rebuild it."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.decoder = nn.Linear(16, 64)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.decoder(self.encoder(x))


def seeded(cls: type, seed: int = 0):  # type: ignore[no-untyped-def]
    """An instance of ``cls`` with weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return cls().eval()
