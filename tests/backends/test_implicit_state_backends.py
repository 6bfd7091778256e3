"""Implicit state on ONNX Runtime and TorchScript models, not only python ones.

A running sum exported from torch (``forward(INPUT, ACC_IN) -> (OUTPUT, ACC_OUT)``) is served
with ``sequence_batching { state { input_name: "ACC_IN" output_name: "ACC_OUT" } }``: the
batcher feeds each sequence's state in and keeps what the model returns, so two interleaved
sequences each see their own sum. Clients neither send nor receive the state tensors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from headrace.errors import InvalidInput
from headrace.server.core import InferenceServer
from headrace.types import InferenceRequest

torch = pytest.importorskip("torch")

SEQUENCE = """
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  state [ {
    input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_FP32 dims: [ 1 ]
    initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: "zeros" }
  } ]
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


class Accumulate(torch.nn.Module):
    def forward(self, INPUT, ACC_IN):  # type: ignore[no-untyped-def]
        total = ACC_IN + INPUT
        return total, total


def write_model(root: Path, name: str, format: str) -> None:
    from headrace.repository import ModelRepository

    repo = ModelRepository(str(root))
    entry = repo.add(name, max_batch_size=4)
    entry.export_version(
        Accumulate(),
        input_shapes={"INPUT": (None, 1), "ACC_IN": (None, 1)},
        output_names=["OUTPUT", "ACC_OUT"],
        format=format,  # type: ignore[arg-type]
    )
    backend = "onnxruntime" if format == "onnx" else "pytorch"
    (root / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: 4\n'
        'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n' + SEQUENCE
    )


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_two_interleaved_sequences_keep_their_own_state(tmp_path: Path, format: str) -> None:
    write_model(tmp_path, "acc", format)

    async def body() -> None:
        server = InferenceServer(tmp_path)
        await server.start()

        async def send(sequence: int, value: float, start: bool = False) -> float:
            request = InferenceRequest(
                "acc",
                {"INPUT": np.array([[value]], np.float32)},
                sequence_id=sequence,
                sequence_start=start,
            )
            result = await server.infer(request)
            assert list(result.outputs) == ["OUTPUT"]  # the state stays on the server
            return float(result.outputs["OUTPUT"][0, 0])

        sums = []
        for step, (a, b) in enumerate([(1, 10), (2, 20), (3, 30)]):
            sums.append((await send(7, a, step == 0), await send(8, b, step == 0)))
        assert sums == [(1.0, 10.0), (3.0, 30.0), (6.0, 60.0)]
        assert await send(7, 5.0, start=True) == 5.0  # a new start resets the state
        with pytest.raises(InvalidInput, match="ACC_IN"):
            await server.infer(
                InferenceRequest(
                    "acc",
                    {
                        "INPUT": np.array([[1.0]], np.float32),
                        "ACC_IN": np.array([[1.0]], np.float32),
                    },
                    sequence_id=7,
                )
            )
        await server.stop()

    asyncio.run(asyncio.wait_for(body(), 60))
