"""Small torch modules behind the examples repository (imported only when torch is wanted).

They match the seed workloads: a 64 -> 256 -> 128 -> 64 -> 1 sigmoid classifier, a
64 -> 32 -> 16 -> 64 noise remover, the two models of the streaming detector pipeline
(a convolutional noise remover and a detector over multichannel snapshots) and the
ParticleNet-style jet tagger the saturation studies scan (:mod:`.particlenet`). Weights come
from a fixed seed, so every examples repository holds the same numbers.
"""

from __future__ import annotations

from headrace.errors import require

torch = require("torch", "torch")
nn = torch.nn

__all__ = ["MLP", "NoiseRemover", "StrainCleaner", "StrainDetector", "seeded"]


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


class StrainCleaner(nn.Module):  # type: ignore[misc,name-defined]
    """[channels, samples] -> the same shape: two 1-D convolutions that subtract an estimate
    of the noise from each channel (the role DeepClean plays on detector strain)."""

    def __init__(self, channels: int = 2, width: int = 8, kernel: int = 7) -> None:
        super().__init__()
        self.noise = nn.Sequential(
            nn.Conv1d(channels, width, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.Conv1d(width, channels, kernel, padding=kernel // 2),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x - self.noise(x)


class StrainDetector(nn.Module):  # type: ignore[misc,name-defined]
    """[channels, samples] -> [1]: the probability that a snapshot holds a signal (the role
    BBHnet plays), a strided convolution, pooled over time, then a sigmoid."""

    def __init__(self, channels: int = 2, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(channels, width, 16, stride=8), nn.ReLU(), nn.AdaptiveAvgPool1d(1)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width, 1), nn.Sigmoid())

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.features(x))


def seeded(cls: type, seed: int = 0):  # type: ignore[no-untyped-def]
    """An instance of ``cls`` with weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return cls().eval()
