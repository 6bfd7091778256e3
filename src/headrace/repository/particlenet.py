"""A ParticleNet-style jet tagger: the seed's workload for saturation scans.

ParticleNet treats a jet as an unordered cloud of particles. Each EdgeConv block finds the
``k`` nearest neighbours of every particle (in the (eta, phi) coordinates for the first block,
in the previous block's features after that), builds edge features ``(x_i, x_j - x_i)``, runs
a shared MLP over every edge and averages over the neighbours, with a linear shortcut. A
masked global average and two dense layers give the class probabilities.

Sized for AK4 jets: ``PARTICLES`` = 50 particles (zero-padded, ``mask`` = 0 for padding) with
``COORDINATES`` = 2 coordinates and ``FEATURES`` = 8 features each; two blocks of three
layers (k = 7, 16 then 32 channels: ParticleNet-Lite at half width, so a CPU runs batch 64 in
tens of milliseconds), about 9 k parameters. Tensors are particle-major: ``points [N, P, 2]``,
``features [N, P, 8]``, ``mask [N, P, 1]`` -> ``probabilities [N, 2]``.

The kNN is written with ops both exporters keep dynamic in the batch: pairwise distances as
matmuls, ``topk``, and one flat ``index_select`` (ONNX ``TopK`` and ``Gather``), so the
TorchScript trace and the ONNX graph run at every batch size.
"""

from __future__ import annotations

from headrace.errors import require

torch = require("torch", "torch")
nn = torch.nn

__all__ = ["COORDINATES", "FEATURES", "PARTICLES", "EdgeConv", "ParticleNet"]

PARTICLES = 50
COORDINATES = 2
FEATURES = 8
CLASSES = 2
#: Padding particles are moved this far away so that no real particle picks them as neighbours.
_FAR = 1e9


def knn(points, k: int):  # type: ignore[no-untyped-def]
    """Indices ``[N, P, k]`` of each point's ``k`` nearest other points (``points [N, P, C]``)."""
    inner = torch.matmul(points, points.transpose(1, 2))
    squared = (points * points).sum(dim=-1, keepdim=True)
    distance = squared - 2 * inner + squared.transpose(1, 2)
    return (-distance).topk(k + 1, dim=-1).indices[:, :, 1:]  # the nearest is the point itself


def gather_neighbours(features, index):  # type: ignore[no-untyped-def]
    """``features [N, P, C]`` at ``index [N, P, k]`` -> ``[N, P, k, C]``."""
    batch, particles, channels = features.shape
    offset = torch.arange(batch, device=features.device).view(-1, 1, 1) * particles
    flat = (index + offset).reshape(-1)
    picked = features.reshape(-1, channels).index_select(0, flat)
    return picked.view(batch, particles, index.shape[-1], channels)


class EdgeConv(nn.Module):  # type: ignore[misc,name-defined]
    """One EdgeConv block: a shared MLP over the edges to the k nearest neighbours, averaged."""

    def __init__(self, k: int, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []  # type: ignore[name-defined]
        width = 2 * in_channels
        for out in channels:
            layers += [nn.Linear(width, out), nn.ReLU()]  # eval BatchNorm folds into Linear
            width = out
        self.edge_mlp = nn.Sequential(*layers)
        self.shortcut = nn.Linear(in_channels, channels[-1], bias=False)
        self.out = nn.ReLU()

    def forward(self, points, features, mask):  # type: ignore[no-untyped-def]
        index = knn(points, self.k)
        neighbours = gather_neighbours(features, index)
        centre = features.unsqueeze(2).expand_as(neighbours)
        edges = torch.cat((centre, neighbours - centre), dim=-1)
        aggregated = self.edge_mlp(edges).mean(dim=2)
        return self.out(aggregated + self.shortcut(features)) * mask


class ParticleNet(nn.Module):  # type: ignore[misc,name-defined]
    """points, features, mask -> class probabilities; see the module docstring."""

    def __init__(
        self,
        features: int = FEATURES,
        blocks: tuple[tuple[int, tuple[int, ...]], ...] = ((7, (16, 16, 16)), (7, (32, 32, 32))),
        hidden: int = 64,
        classes: int = CLASSES,
    ) -> None:
        super().__init__()
        self.input_norm = nn.LayerNorm(features)
        convs = []
        width = features
        for k, channels in blocks:
            convs.append(EdgeConv(k, width, channels))
            width = channels[-1]
        self.convs = nn.ModuleList(convs)
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes), nn.Softmax(dim=-1)
        )

    def forward(self, points, features, mask):  # type: ignore[no-untyped-def]
        mask = (mask != 0).to(features.dtype)
        shift = (1.0 - mask) * _FAR  # padding far from every real particle
        x = self.input_norm(features) * mask
        coordinates = points * mask + shift
        for index, conv in enumerate(self.convs):
            if index > 0:
                coordinates = x + shift
            x = conv(coordinates, x, mask)
        pooled = x.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)
