"""A labelled image folder of synthetic shapes, drawn with Pillow from a fixed seed.

Four classes (circle, cross, square, triangle) of 32x32 RGB images, each shape at a random
position, size and colour on a random background, so the classifier has to learn the shape
rather than a colour. The layout is the one ``headrace run`` reads labels from:
``ROOT/<split>/<class>/<index>.png`` (the label is the sub-folder's index among the sorted
class names).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = ["CLASSES", "IMAGE_SIZE", "Split", "write_shapes"]

CLASSES = ("circle", "cross", "square", "triangle")  # sorted: the folder index is the label
IMAGE_SIZE = 32


@dataclass(frozen=True)
class Split:
    """The train and test folders of one generated data set."""

    train: str
    test: str


def write_shapes(root: str, per_class: int, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Draw ``per_class`` images of each class under ``root``; a fixed seed gives fixed files."""
    rng = random.Random(seed)
    split = Split(os.path.join(root, "train"), os.path.join(root, "test"))
    n_test = max(1, round(per_class * test_fraction))
    for label in CLASSES:
        for index in range(per_class):
            folder = split.test if index < n_test else split.train
            os.makedirs(os.path.join(folder, label), exist_ok=True)
            _draw(label, rng).save(os.path.join(folder, label, f"{index:05d}.png"))
    return split


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _contrasting(rng: random.Random, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour far enough from the background to be seen."""
    while True:
        colour = _colour(rng)
        if sum(abs(a - b) for a, b in zip(colour, background)) > 180:
            return colour


def _draw(label: str, rng: random.Random) -> Image.Image:
    background = _colour(rng)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    fill = _contrasting(rng, background)
    half = rng.randint(6, 12)
    cx = rng.randint(half, IMAGE_SIZE - 1 - half)
    cy = rng.randint(half, IMAGE_SIZE - 1 - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    if label == "circle":
        draw.ellipse(box, fill=fill)
    elif label == "square":
        draw.rectangle(box, fill=fill)
    elif label == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    else:  # cross
        bar = max(2, half // 3)
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=fill)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=fill)
    return image
