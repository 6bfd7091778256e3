"""The training set: 16x16 grayscale images of one or two soft Gaussian blobs, in ``[-1, 1]``.

Simple enough for a small U-Net to learn in under a minute on a CPU, varied enough (position,
size, brightness, count) that the samples show whether it did: a good sample is a dark field
with one or two round bright spots.
"""

from __future__ import annotations

import numpy as np

__all__ = ["blob_images"]


def blob_images(count: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """``count`` images ``[count, 1, size, size]`` (float32, background -1, peaks up to 1)."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size, dtype=np.float32)
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    images = np.zeros((count, size, size), dtype=np.float32)
    blobs = rng.integers(1, 3, size=count)  # one or two per image
    for slot in range(2):
        present = (blobs > slot).astype(np.float32)[:, None, None]
        cy = rng.uniform(3, size - 4, count).astype(np.float32)[:, None, None]
        cx = rng.uniform(3, size - 4, count).astype(np.float32)[:, None, None]
        sigma = rng.uniform(1.2, 2.8, count).astype(np.float32)[:, None, None]
        peak = rng.uniform(0.6, 1.0, count).astype(np.float32)[:, None, None]
        blob = peak * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
        images = np.maximum(images, present * blob)
    return (images * 2 - 1)[:, None, :, :]
