"""The snapshotter: a stateful model that keeps the latest snapshot of each stream.

Online inference on a time series (noise removal and detection on detector strain, as LIGO's
inference-as-a-service pipelines run them) works on overlapping fixed-length *snapshots*:
``channels`` x ``snapshot_size`` samples, moved forward by ``update_size`` new samples at
every step. Sending the whole snapshot with every request multiplies the traffic by
``snapshot_size / update_size``, so the snapshotter keeps each stream's snapshot on the
server: a client sends only the new samples, on its own sequence (``sequence_id``, started
with ``sequence_start``), and gets the updated snapshot back, ready for the models after it
in an ensemble.

It is a Triton python-backend model (``model.py`` + ``config.pbtxt``), so the same files
serve in headrace and in NVIDIA Triton. Its ``sequence_batching`` routes every request of a
stream to the same instance, in order. Where the snapshot lives is ``state``:

- ``"implicit"`` (default): Triton's implicit state, kept by the sequence batcher per
  sequence slot and released when the sequence ends or idles out;
- ``"model"``: a dict in the model keyed by correlation id, dropped at the sequence's end
  (for servers whose python backend does not carry implicit state, such as Triton 2.51).

A ``READY`` control input lets the model skip the empty rows a direct batcher fills in.
"""

from __future__ import annotations

from typing import Literal

from headrace.errors import InvalidConfig
from headrace.repository.api import ModelRepository
from headrace.repository.entry import ModelEntry

__all__ = ["SNAPSHOTTER_MODEL", "add_snapshotter"]

SnapshotState = Literal["implicit", "model"]

SNAPSHOTTER_MODEL = '''\
"""Keeps the latest snapshot of each stream; takes new samples, returns the whole snapshot."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

START = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
END = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.channels = int(parameters["channels"])
        self.snapshot_size = int(parameters["snapshot_size"])
        self.update_size = int(parameters["update_size"])
        self.in_model = parameters.get("state") == "model"
        self.snapshots = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            update = pb_utils.get_input_tensor_by_name(request, "update").as_numpy()
            ready = pb_utils.get_input_tensor_by_name(request, "READY")
            if ready is not None and not ready.as_numpy().any():
                shape = (*update.shape[:-1], self.snapshot_size)
                empty = np.zeros(shape, dtype=np.float32)
                responses.append(self._response(empty))
                continue
            previous = self._previous(request, update)
            snapshot = np.concatenate(
                [previous[..., self.update_size :], update], axis=-1
            ).astype(np.float32)
            responses.append(self._response(snapshot, request))
        return responses

    def _previous(self, request, update):
        if not self.in_model:
            state = pb_utils.get_input_tensor_by_name(request, "SNAPSHOT_IN").as_numpy()
            return state.reshape((*update.shape[:-1], self.snapshot_size))
        key = request.correlation_id()
        if request.flags() & START or key not in self.snapshots:
            return np.zeros((*update.shape[:-1], self.snapshot_size), dtype=np.float32)
        return self.snapshots[key]

    def _response(self, snapshot, request=None):
        outputs = [pb_utils.Tensor("snapshot", snapshot)]
        if request is not None and self.in_model:
            key = request.correlation_id()
            if request.flags() & END:
                self.snapshots.pop(key, None)
            else:
                self.snapshots[key] = snapshot
        elif not self.in_model:
            outputs.append(pb_utils.Tensor("SNAPSHOT_OUT", snapshot))
        return pb_utils.InferenceResponse(output_tensors=outputs)
'''


def add_snapshotter(
    repo: ModelRepository,
    name: str = "snapshotter",
    *,
    channels: int,
    snapshot_size: int,
    update_size: int,
    max_batch_size: int = 8,
    state: SnapshotState = "implicit",
    idle_us: int = 60_000_000,
    instances: int = 1,
) -> ModelEntry:
    """Add a snapshotter to ``repo``: input ``update`` [channels, update_size], output
    ``snapshot`` [channels, snapshot_size], FP32, one sequence per stream.

    ``idle_us`` is how long a stream may pause before its snapshot is released.
    """
    for label, value in (
        ("channels", channels),
        ("snapshot_size", snapshot_size),
        ("update_size", update_size),
        ("instances", instances),
    ):
        if value < 1:
            raise InvalidConfig(f"snapshotter {label} must be at least 1, got {value}")
    if update_size > snapshot_size:
        raise InvalidConfig(
            f"snapshotter update_size {update_size} exceeds snapshot_size {snapshot_size}"
        )
    if state not in ("implicit", "model"):
        raise InvalidConfig(f"snapshotter state must be 'implicit' or 'model', got {state!r}")
    entry = repo.add(
        name,
        backend="python",
        max_batch_size=max_batch_size,
        inputs=[("update", "FP32", [channels, update_size])],
        outputs=[("snapshot", "FP32", [channels, snapshot_size])],
    )
    entry.add_version_file(1, "model.py", SNAPSHOTTER_MODEL.encode())
    parameters: dict[str, int | str] = {
        "channels": channels,
        "snapshot_size": snapshot_size,
        "update_size": update_size,
        "state": state,
    }
    for key, setting in parameters.items():
        entry.config.set_parameter(key, str(setting))
    entry.config.add_instance_group(count=instances, kind="cpu")
    _sequence_batching(entry, channels, snapshot_size, state, idle_us)
    return entry


def _sequence_batching(
    entry: ModelEntry, channels: int, snapshot_size: int, state: SnapshotState, idle_us: int
) -> None:
    from google.protobuf import text_format

    text = (
        f"max_sequence_idle_microseconds: {idle_us}\n"
        "direct { }\n"
        'control_input [ { name: "READY" control [ '
        "{ kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] } ]\n"
    )
    if state == "implicit":
        dims = f"[ {channels}, {snapshot_size} ]"
        text += (
            'state [ { input_name: "SNAPSHOT_IN" output_name: "SNAPSHOT_OUT" '
            f"data_type: TYPE_FP32 dims: {dims} "
            f'initial_state {{ data_type: TYPE_FP32 dims: {dims} zero_data: true name: "zeros" }} '
            "} ]\n"
        )
    config = entry.config
    text_format.Parse(text, config.proto.sequence_batching)
    config.save()
