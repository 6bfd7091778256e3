"""A small DDPM: a U-Net noise predictor and a sampler model whose input is a seed.

This file is self-contained (torch only) because it is copied as ``model.py`` into the model
repository, where headrace's plain-PyTorch backend imports it and builds ``Sampler()`` (named by
the ``module`` parameter, since the file defines several modules), then loads ``model.pt``
(its ``state_dict``: the U-Net weights and the number of denoising steps).

``Sampler.forward(seed)`` takes INT64 seeds ``[N, 1]`` and returns images ``[N, 1, 16, 16]`` in
``[-1, 1]``. Every random number a row uses (its starting noise and the noise of every step) is
drawn on the CPU from a ``torch.Generator`` seeded with that row's seed, so a seed always gives
the same image, whatever batch it lands in and on whichever device the U-Net runs: resuming a
job or deduplicating rows by seed is safe. A seed-driven generator cannot be traced or
exported to ONNX, which is why this model is served as plain PyTorch rather than TorchScript.

The noise schedule is the cosine one (Nichol & Dhariwal 2021), which works for any number of
steps; the U-Net sees the time as ``t / T``, so the same network code serves any ``T``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["IMAGE_SIZE", "Sampler", "UNet", "alpha_bars", "noised"]

IMAGE_SIZE = 16
CHANNELS = 1


def alpha_bars(steps: int) -> torch.Tensor:
    """``abar[t]`` for ``t = 0..steps`` (``abar[0] = 1``): the cosine schedule, betas <= 0.999."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).float()


def noised(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor
) -> torch.Tensor:
    """``x_t`` drawn from ``q(x_t | x_0)`` with the given noise (training's forward process)."""
    a = abar[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``t / T`` followed by a small MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = torch.exp(-math.log(1000.0) * torch.arange(half, device=time.device) / half)
        angles = 1000.0 * time[:, None] * scale[None, :]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm/SiLU, the time added in between, and a skip."""

    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(
            nn.GroupNorm(8, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1)
        )
        self.time = nn.Linear(tdim, cout)
        self.second = nn.Sequential(
            nn.GroupNorm(8, cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.first(x) + self.time(emb)[:, :, None, None]
        return self.second(h) + self.skip(x)


class UNet(nn.Module):
    """16x16 -> 8x8 -> 4x4 and back, with skip connections; predicts the added noise."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w, tdim = width, 4 * width
        self.embed = TimeEmbedding(tdim)
        self.stem = nn.Conv2d(CHANNELS, w, 3, padding=1)
        self.down1 = ResBlock(w, w, tdim)
        self.pool1 = nn.Conv2d(w, w, 3, stride=2, padding=1)
        self.down2 = ResBlock(w, 2 * w, tdim)
        self.pool2 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * w, 2 * w, tdim)
        self.up2 = ResBlock(4 * w, 2 * w, tdim)
        self.up1 = ResBlock(3 * w, w, tdim)
        self.head = nn.Sequential(
            nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, CHANNELS, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        emb = self.embed(time)
        s1 = self.down1(self.stem(x), emb)  # 16x16
        s2 = self.down2(self.pool1(s1), emb)  # 8x8
        h = self.mid(self.pool2(s2), emb)  # 4x4
        h = self.up2(torch.cat([_upsample(h), s2], dim=1), emb)
        h = self.up1(torch.cat([_upsample(h), s1], dim=1), emb)
        return self.head(h)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class Sampler(nn.Module):
    """Seeds in, DDPM samples out: ``T`` ancestral steps of the U-Net (``num_steps`` buffer)."""

    num_steps: torch.Tensor

    def __init__(self, steps: int = 100) -> None:
        super().__init__()
        self.unet = UNet()
        # A buffer, so the step count travels in model.pt with the weights it was trained for.
        self.register_buffer("num_steps", torch.tensor(steps, dtype=torch.int64))

    def row_noise(self, seed: torch.Tensor) -> torch.Tensor:
        """``[T + 1, N, 1, H, W]`` normal noise; row ``i`` comes from its own seed only."""
        steps = int(self.num_steps)
        shape = (steps + 1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
        rows = [
            torch.randn(shape, generator=torch.Generator().manual_seed(int(value)))
            for value in seed.reshape(-1).tolist()
        ]
        return torch.stack(rows, dim=1)

    @torch.no_grad()
    def forward(self, seed: torch.Tensor) -> torch.Tensor:
        device = self.num_steps.device
        steps = int(self.num_steps)
        abar = alpha_bars(steps).to(device)
        noise = self.row_noise(seed.cpu()).to(device)
        x = noise[0]
        for t in range(steps, 0, -1):
            time = torch.full((x.shape[0],), t / steps, device=device)
            eps = self.unet(x, time)
            a_t, a_prev = abar[t], abar[t - 1]
            beta = 1 - a_t / a_prev
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
            mean = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x) / (1 - a_t)
            if t > 1:
                x = mean + (beta * (1 - a_prev) / (1 - a_t)).sqrt() * noise[steps - t + 1]
            else:
                x = mean
        return x.clamp(-1, 1)
