"""DDPM sampling with ``headrace run``: seeds in, images out, on local instances or Ray actors.

    python examples/ddpm/sample.py                 # train (about a minute), sample 64 seeds
    python examples/ddpm/sample.py --tiny          # seconds (the smoke test)
    unshare -n sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec \\
        python examples/ddpm/sample.py --ray --instances 2 --num-gpus 0'

Steps: train the U-Net of ``ddpm_sampler.py`` on generated blobs (``blobs.py``), put the
sampler in a model repository as a plain PyTorch model (``model.py`` + ``model.pt``), run
``headrace run REPO/ddpm seeds:0:N --format images --value-range=-1,1 --out OUT`` (one PNG
per seed), tile the samples into ``OUT/grid.png``, and check that sampling a few seeds again
directly, one at a time, gives the same pixels (the sampler is deterministic per seed).
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from blobs import blob_images
from ddpm_sampler import IMAGE_SIZE, Sampler, alpha_bars, noised
from PIL import Image

from headrace.repository import ModelRepository
from headrace.types import DataType

TINY_ENV = "HEADRACE_EXAMPLE_TINY"
SAMPLER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_sampler.py")


@dataclass(frozen=True)
class Result:
    """What a run produced and how it checked out."""

    rows: int
    rows_per_second: float
    grid: str
    max_pixel_diff: int  # headrace's PNGs vs direct single-seed sampling, 0..255
    sample_mean: float  # mean pixel in [-1, 1] of the samples ...
    data_mean: float  # ... and of the training images


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="headrace-example-ddpm")
    parser.add_argument(
        "--tiny", action="store_true", default=os.environ.get(TINY_ENV) == "1",
        help=f"few denoising and training steps (also {TINY_ENV}=1)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=0, help="denoising steps T (100)")
    parser.add_argument("--train-steps", type=int, default=0, help="optimiser steps (1500)")
    parser.add_argument("--samples", type=int, default=0, help="seeds to sample (64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--shard-size", type=int, default=0, help="seeds per output shard (2 batches)"
    )
    parser.add_argument("--instances", type=int, default=1, help="local instances or Ray actors")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray actor")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.tiny else 100)
    args.train_steps = args.train_steps or (8 if args.tiny else 1500)
    args.samples = args.samples or (8 if args.tiny else 64)
    # Small shards: every Ray actor gets some, and a resumed job redoes little.
    args.shard_size = args.shard_size or 2 * args.batch_size
    return args


def headrace_run(argv: list[str]) -> Any:
    """``headrace run ARGV`` in this process (the CLI's own parser and runners); its summary."""
    from headrace.batch.cli import run_command

    print("$ headrace " + shlex.join(argv), flush=True)
    return run_command(argv)


def train(data: np.ndarray, steps: int, train_steps: int, seed: int = 0) -> Sampler:
    """Noise-prediction loss (MSE) at uniformly drawn times, Adam, batches of 32."""
    torch.manual_seed(seed)
    sampler = Sampler(steps)
    abar = alpha_bars(steps)
    images = torch.from_numpy(data)
    optimizer = torch.optim.Adam(sampler.unet.parameters(), lr=2e-3)
    sampler.train()
    for step in range(1, train_steps + 1):
        x0 = images[torch.randint(len(images), (32,))]
        t = torch.randint(1, steps + 1, (32,))
        noise = torch.randn_like(x0)
        loss = torch.nn.functional.mse_loss(
            sampler.unet(noised(x0, t, noise, abar), t / steps), noise
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == train_steps:
            print(f"step {step}/{train_steps}: loss {float(loss.detach()):.4f}", flush=True)
    return sampler.eval()


def export(repo_dir: str, sampler: Sampler, batch_size: int) -> str:
    """A plain PyTorch model: ``model.py`` (this example's sampler file) + ``model.pt``."""
    repo = ModelRepository(repo_dir)
    if "ddpm" in repo:
        repo.remove("ddpm")
    entry = repo.add(
        "ddpm",
        backend="pytorch",
        max_batch_size=batch_size,
        inputs=[("seed", DataType.INT64, [1])],
        outputs=[("image", DataType.FP32, [1, IMAGE_SIZE, IMAGE_SIZE])],
    )
    entry.config.set_parameter("module", "Sampler")  # model.py defines several nn.Modules
    with open(SAMPLER_SOURCE, "rb") as source:
        entry.add_version_file(1, "model.py", source.read())
    weights = io.BytesIO()
    torch.save(sampler.state_dict(), weights)
    entry.add_version_file(1, "model.pt", weights.getvalue())
    return entry.path


def save_grid(image_dir: str, path: str, columns: int = 8, scale: int = 4) -> np.ndarray:
    """Tile every PNG of ``image_dir`` (in row order) into one image; returns the pixels."""
    names = sorted(n for n in os.listdir(image_dir) if n.endswith(".png"))
    tiles = np.stack([np.asarray(Image.open(os.path.join(image_dir, n))) for n in names])
    rows = -(-len(tiles) // columns)
    height, width = tiles.shape[1:3]
    grid = np.zeros((rows * (height + 1), columns * (width + 1)), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        grid[
            r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width
        ] = tile
    picture = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST
    )
    picture.save(path)
    return tiles


def run(args: argparse.Namespace) -> Result:
    """Train, export, sample with ``headrace run``, tile and check."""
    if args.threads:
        torch.set_num_threads(args.threads)
    work = os.path.abspath(args.workdir)
    data = blob_images(4096 if not args.tiny else 256)
    sampler = train(data, args.steps, args.train_steps)
    model_dir = export(os.path.join(work, "models"), sampler, args.batch_size)
    out = os.path.join(work, "samples")
    argv = [
        "run", model_dir, f"seeds:0:{args.samples}", "--out", out, "--format", "images",
        "--value-range=-1,1", "--batch-size", str(args.batch_size),
        "--shard-size", str(args.shard_size),
        "--instances", str(args.instances), "--device", args.device, "--overwrite",
    ]  # fmt: skip
    if args.ray:
        argv += ["--ray", "--num-gpus", str(args.num_gpus)]
    summary = headrace_run(argv)
    grid = os.path.join(out, "grid.png")
    tiles = save_grid(os.path.join(out, "image"), grid)
    if len(tiles) != args.samples:
        raise SystemExit(f"headrace wrote {len(tiles)} images for {args.samples} seeds")
    again = np.concatenate([sampler(torch.tensor([[seed]])).numpy() for seed in range(4)])
    direct = np.round((again[:, 0] + 1) / 2 * 255).astype(np.int16)
    diff = int(np.abs(direct - tiles[: len(direct)].astype(np.int16)).max())
    return Result(
        summary.rows, summary.rows_per_second, grid, diff,
        float(tiles.mean() / 127.5 - 1), float(data.mean()),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(f"{result.rows} samples, {result.rows_per_second:,.1f} rows/s; grid: {result.grid}")
    print(f"mean pixel: samples {result.sample_mean:+.3f}, training data {result.data_mean:+.3f}")
    print(f"largest pixel difference from direct per-seed sampling: {result.max_pixel_diff}")
    if result.max_pixel_diff > 1:
        print("the sampler is not deterministic per seed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
