"""Image classification with ``headrace run``: train a small CNN, classify a held-out folder.

    python examples/image_classifier/classify.py                  # train, export, classify
    python examples/image_classifier/classify.py --model resnet50 # ResNet-50 throughput run
    python examples/image_classifier/classify.py --tiny           # seconds (the smoke test)

Steps: draw a labelled folder of synthetic shapes (``shapes.py``), train the CNN on the train
split, export it (ONNX or TorchScript) into a model repository, then run
``headrace run REPO/classifier DATA/test --out OUT`` and compare its logits with the labels
(accuracy) and with the torch model's own logits on a sample (they must agree). With
``--model resnet50`` a randomly initialised ResNet-50 classifies the same images resized to
``--image-size`` and the run's rows/s is the point. Everything comes from fixed seeds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from cnn_models import ImageInput, ResNet50, SmallCNN
from shapes import CLASSES, IMAGE_SIZE, write_shapes

from headrace.batch.dataset import DataSpec
from headrace.batch.readers import open_reader
from headrace.batch.results import load_results
from headrace.repository import ModelRepository

TINY_ENV = "HEADRACE_EXAMPLE_TINY"


@dataclass(frozen=True)
class Result:
    """What a run measured; ``accuracy`` is None for the (untrained) ResNet-50."""

    model: str
    rows: int
    rows_per_second: float
    accuracy: float | None
    max_rel_diff: float  # |headrace - torch| logits on a sample, over the largest |logit|


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "resnet50"), default="cnn")
    parser.add_argument("--workdir", default="headrace-example-image-classifier")
    parser.add_argument(
        "--tiny", action="store_true", default=os.environ.get(TINY_ENV) == "1",
        help=f"a few images, few steps (also {TINY_ENV}=1)",
    )  # fmt: skip
    parser.add_argument("--per-class", type=int, default=0, help="images per class (300)")
    parser.add_argument("--epochs", type=int, default=0, help="CNN training epochs (8)")
    parser.add_argument("--batch-size", type=int, default=0, help="64 (cnn), 32 (resnet50)")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--shard-size", type=int, default=0, help="rows per output shard (2 batches)"
    )
    parser.add_argument("--export", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--image-size", type=int, default=0, help="resnet50 input side (224)")
    parser.add_argument("--width", type=int, default=0, help="resnet50 base width (64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray actor")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.per_class = args.per_class or (10 if tiny else 300)
    args.epochs = args.epochs or (3 if tiny else 8)
    args.batch_size = args.batch_size or (64 if args.model == "cnn" else 32)
    args.image_size = args.image_size or (IMAGE_SIZE if tiny else 224)
    args.width = args.width or (8 if tiny else 64)
    # Several shards even for a few hundred images, so every instance or Ray actor gets work.
    args.shard_size = args.shard_size or 2 * args.batch_size
    return args


def headrace_run(argv: list[str]) -> Any:
    """``headrace run ARGV`` in this process (the CLI's own parser and runners); its summary."""
    from headrace.batch.cli import run_command

    print("$ headrace " + shlex.join(argv), flush=True)
    return run_command(argv)


def train_cnn(train_dir: str, epochs: int, seed: int = 0) -> torch.nn.Module:
    """Adam on the whole train split (it fits in memory), cross-entropy, fixed seed."""
    torch.manual_seed(seed)
    reader = open_reader(DataSpec(train_dir))
    try:
        batch = reader.read(0, reader.num_rows)
    finally:
        reader.close()
    images = torch.from_numpy(batch.columns["image"])
    labels = torch.from_numpy(batch.columns["label"])
    model = ImageInput(SmallCNN(len(CLASSES)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for rows in torch.randperm(len(labels), generator=order).split(32):
            loss = torch.nn.functional.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(labels):.4f}", flush=True)
    return model.eval()


def export(repo_dir: str, name: str, model: torch.nn.Module, side: int, args: Any) -> str:
    """Put ``model`` in the repository as ``name`` (replacing it); returns ``REPO/NAME``."""
    repo = ModelRepository(repo_dir)
    if name in repo:
        repo.remove(name)
    entry = repo.add(name, max_batch_size=args.batch_size)
    entry.export_version(
        model,
        input_shapes={"image": (None, side, side, 3)},
        input_dtypes={"image": torch.uint8},
        output_names=["logits"],
        format=args.export,
    )
    return entry.path


def check(model: torch.nn.Module, data: str, out: str, side: int) -> tuple[float, float]:
    """Accuracy over every row and the largest relative logit difference from torch (16 rows)."""
    results = load_results(out)
    logits = results.outputs["logits"][np.argsort(results.row_ids)]
    reader = open_reader(DataSpec(data, image_size=(side, side)))
    try:
        labels = reader.read(0, reader.num_rows).columns["label"]
        sample = reader.read(0, min(16, reader.num_rows)).columns["image"]
    finally:
        reader.close()
    if len(logits) != len(labels):
        raise SystemExit(f"headrace wrote {len(logits)} rows for {len(labels)} images")
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    with torch.no_grad():
        expected = model(torch.from_numpy(sample)).numpy()
    scale = max(float(np.abs(expected).max()), 1e-12)
    return accuracy, float(np.abs(logits[: len(expected)] - expected).max()) / scale


def run(args: argparse.Namespace) -> Result:
    """Build the data and the model, run ``headrace run`` over the test folder, check it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    work = os.path.abspath(args.workdir)
    shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
    split = write_shapes(os.path.join(work, "data"), args.per_class)
    if args.model == "cnn":
        model, side = train_cnn(split.train, args.epochs), IMAGE_SIZE
    else:
        torch.manual_seed(0)
        model, side = ImageInput(ResNet50(width=args.width)).eval(), args.image_size
    name = "classifier" if args.model == "cnn" else "resnet50"
    model_dir = export(os.path.join(work, "models"), name, model, side, args)
    out = os.path.join(work, f"out-{name}")
    argv = [
        "run", model_dir, split.test, "--out", out, "--batch-size", str(args.batch_size),
        "--shard-size", str(args.shard_size),
        "--instances", str(args.instances), "--device", args.device, "--overwrite",
    ]  # fmt: skip
    if side != IMAGE_SIZE:
        argv += ["--image-size", f"{side}x{side}"]
    if args.ray:
        argv += ["--ray", "--num-gpus", str(args.num_gpus)]
    summary = headrace_run(argv)
    accuracy, diff = check(model, split.test, out, side)
    return Result(
        name, summary.rows, summary.rows_per_second, accuracy if name != "resnet50" else None, diff
    )


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(f"{result.model}: {result.rows} images, {result.rows_per_second:,.1f} rows/s")
    if result.accuracy is not None:
        print(f"held-out accuracy: {result.accuracy:.1%}")
    print(
        f"headrace vs torch logits on a sample: max relative difference {result.max_rel_diff:.2e}"
    )
    if result.max_rel_diff > 1e-4:
        print("headrace's outputs differ from the torch model's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
