"""A folder of images as a dataset: one row per file, decoded and resized on worker threads.

Files are found recursively and sorted by relative path, so row ids are stable. Each row has
``image`` (uint8, ``H x W x 3`` RGB, resized to ``image_size`` when given) and, when the images
sit in sub-folders (``class/xxx.png``), ``label``: the index of the sub-folder among the sorted
sub-folder names (the usual labelled-folder layout).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from headrace.batch.dataset import Batch, Reader
from headrace.errors import InvalidInput, require

__all__ = ["IMAGE_SUFFIXES", "ImageFolderReader", "is_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image_folder(source: str) -> bool:
    """A folder with at least one image file somewhere below it."""
    if not os.path.isdir(source):
        return False
    for _, _, files in os.walk(source):
        if any(name.lower().endswith(IMAGE_SUFFIXES) for name in files):
            return True
    return False


def _image_files(root: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


class ImageFolderReader(Reader):
    """Images under ``root``; ``image_size`` is ``(height, width)`` or empty."""

    def __init__(self, root: str, image_size: tuple[int, ...], threads: int = 4) -> None:
        self._image = require("PIL.Image", "data")
        if image_size and len(image_size) != 2:
            raise InvalidInput(f"image size must be (height, width), got {image_size}")
        self.root = root
        self.files = _image_files(root)
        if not self.files:
            raise InvalidInput(f"{root!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.image_size = tuple(image_size)
        classes = sorted({os.path.dirname(f) for f in self.files})
        self.classes = classes if classes != [""] else []
        self._labels = {name: index for index, name in enumerate(self.classes)}
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="headrace-decode")

    @property
    def num_rows(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> Batch:
        self._check_range(start, stop)
        names = self.files[start:stop]
        images = list(self._pool.map(self._decode, names))
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise InvalidInput(
                f"images under {self.root!r} have different sizes {sorted(shapes)}; "
                "give an image size (--image-size HxW) to resize them"
            )
        columns = {"image": np.stack(images) if images else np.empty((0, 0, 0, 3), np.uint8)}
        if self.classes:
            labels = [self._labels[os.path.dirname(name)] for name in names]
            columns["label"] = np.asarray(labels, dtype=np.int64)
        return Batch(np.arange(start, stop, dtype=np.int64), columns)

    def fingerprint(self) -> str:
        newest = max(os.stat(os.path.join(self.root, f)).st_mtime_ns for f in self.files)
        names = hashlib.sha256("\0".join(self.files).encode()).hexdigest()
        return f"{os.path.abspath(self.root)}:{names}:{newest}:{self.image_size}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _decode(self, name: str) -> np.ndarray:
        path = os.path.join(self.root, name)
        try:
            with self._image.open(path) as opened:
                image: Any = opened.convert("RGB")
        except OSError as exc:
            raise InvalidInput(f"cannot decode image {path!r}: {exc}") from exc
        if self.image_size:
            height, width = self.image_size
            if image.size != (width, height):
                image = image.resize((width, height), self._image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
