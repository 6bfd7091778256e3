"""Fakes for the sequence batcher tests: a stateful accumulator backend and its configs."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext, RequestResult
from headrace.engine.instance import ModelInstance
from headrace.scheduling.pool import InstancePool
from headrace.types import Outputs, WorkItem

WAIT_S = 10.0

CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: %s } ] }
  ]
"""
STATE = """
  state [ { input_name: "ACC_IN" output_name: "ACC_OUT" data_type: TYPE_INT32 dims: [ 1 ] %s } ]
"""


def sequence_config(
    strategy: str = "direct { }",
    *,
    max_batch_size: int = 4,
    corrid: str = "TYPE_UINT64",
    state: str | None = "",
    idle_us: int = 5_000_000,
    name: str = "acc",
) -> model_config_pb2.ModelConfig:
    """INT32 'INPUT' [1] → 'OUTPUT' [1]; all four controls; state ACC_IN/ACC_OUT unless None.

    ``state`` is extra text inside the state entry (an ``initial_state { … }``).
    """
    text = f"""
    name: "{name}"
    max_batch_size: {max_batch_size}
    input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
    output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
    sequence_batching {{
      max_sequence_idle_microseconds: {idle_us}
      {strategy}
      {CONTROLS % corrid}
      {"" if state is None else STATE % state}
    }}
    """
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@dataclass(frozen=True)
class Seen:
    """One request as the backend saw it."""

    instance: str
    request_id: str
    value: int
    start: float
    end: int
    ready: bool
    corrid: Any
    state: int | None


class Accumulator(Backend):
    """OUTPUT = ACC_OUT = ACC_IN + INPUT (INPUT alone without a state); records every batch.

    ``gate`` holds each batch until set; ``started`` is set when one begins. An INPUT of -1
    fails that request alone, -2 fails the whole batch. ``via_sink`` answers through the
    requests' sinks (as a decoupled model does) instead of returning outputs.
    """

    name = "accumulator"
    handles_request_lists = True

    def __init__(self, context: BackendContext, gate: threading.Event | None = None) -> None:
        super().__init__(context)
        self.gate = gate
        self.started = threading.Event()
        self.via_sink = False
        self.batches: list[list[Seen]] = []
        self._lock = threading.Lock()

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        raise NotImplementedError

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        seen = [self._seen(item) for item in requests]
        with self._lock:
            self.batches.append(seen)
        self.started.set()
        if self.gate is not None and not self.gate.wait(WAIT_S):
            raise TimeoutError("test gate was never opened")
        if any(s.value == -2 and s.ready for s in seen):
            raise RuntimeError("the whole batch fails")
        results: list[RequestResult] = []
        for item, s in zip(requests, seen):
            if s.value == -1:
                results.append(ValueError("this request fails"))
                continue
            total = np.array([[s.value + (s.state or 0)]], np.int32)
            outputs = {"OUTPUT": total, "ACC_OUT": total.copy()}
            if self.via_sink:
                item.sink.send(outputs, final=True)
                results.append(None)
            else:
                results.append(outputs)
        return results

    def _seen(self, item: WorkItem) -> Seen:
        inputs = item.inputs
        state = inputs.get("ACC_IN")
        return Seen(
            instance=self.context.instance_name,
            request_id=item.request_id,
            value=int(inputs["INPUT"].reshape(-1)[0]),
            start=float(inputs["START"].reshape(-1)[0]),
            end=int(inputs["END"].reshape(-1)[0]),
            ready=bool(inputs["READY"].reshape(-1)[0]),
            corrid=inputs["CORRID"].reshape(-1)[0],
            state=None if state is None else int(state.reshape(-1)[0]),
        )

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return [s for batch in self.batches for s in batch]


def accumulator_pool(
    config: model_config_pb2.ModelConfig, count: int = 1, *, gated: bool = False
) -> tuple[InstancePool, list[Accumulator]]:
    backends = []
    for index in range(count):
        context = BackendContext(
            model_name=config.name,
            version=1,
            model_dir="",
            version_dir="",
            config=config,
            instance_name=f"{config.name}_{index}",
        )
        backends.append(Accumulator(context, threading.Event() if gated else None))
    instances = [ModelInstance(b, num_buffers=2, pin_memory=False) for b in backends]
    return InstancePool(instances), backends


def value(v: int, batched: bool = True) -> dict[str, np.ndarray]:
    return {"INPUT": np.array([[v]] if batched else [v], np.int32)}
