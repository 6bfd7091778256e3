"""What the sequence batcher adds to a request: control inputs, implicit state, id checks.

A ``sequence_batching`` configuration names *control inputs* (``CONTROL_SEQUENCE_START``,
``_END``, ``_READY`` with their ``*_false_true`` values, ``_CORRID`` with its data type) and
*implicit state* (``state { input_name output_name data_type dims initial_state }``). The
batcher fills both as ordinary inputs of each request, so every backend gets them the same
way; a backend returns the state output like any other, and the batcher keeps it for the
sequence's next request. Clients never send these inputs.

Shapes follow Triton: a control tensor is ``[1]`` per request (``[1, 1]`` with the batch
dimension); a state is its ``dims`` per request, a fresh one being ``initial_state`` (zeros, or
the raw row-major contents of ``MODEL_DIR/initial_state/<data_file>``) or, without one, zeros
with each variable dimension 1. Everything here is decided once per loaded version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as pb

from headrace.backends.base import RequestResult
from headrace.config.tensors import datatype_from_config
from headrace.errors import InvalidConfig, InvalidInput
from headrace.scheduling.sequence_slots import DISCARD, SequenceRecord, SequenceTicket, StateSink
from headrace.types import DataType, WorkItem, deserialize_bytes_tensor

__all__ = ["SequenceInputs"]

_Control = pb.ModelSequenceBatching.Control
_FLAG_KINDS = {
    _Control.CONTROL_SEQUENCE_START: "start",
    _Control.CONTROL_SEQUENCE_END: "end",
    _Control.CONTROL_SEQUENCE_READY: "ready",
}
_MAX_ID = 2**64 - 1


@dataclass(frozen=True)
class _Flag:
    """One boolean control: the input that carries it and its false/true values."""

    name: str
    false: np.ndarray
    true: np.ndarray


@dataclass(frozen=True)
class _State:
    input_name: str
    output_name: str
    initial: np.ndarray
    """A fresh state for one request (no batch dimension)."""


class SequenceInputs:
    """The server-filled inputs of one sequence model, compiled from its configuration."""

    def __init__(self, config: Any, model_dir: str = "") -> None:
        settings = config.sequence_batching
        self.model = config.name
        self._batch = (1,) if config.max_batch_size > 0 else ()
        self._flags: dict[str, _Flag] = {}
        self._corrid: tuple[str, DataType] | None = None
        for control_input in settings.control_input:
            for control in control_input.control:
                if control.kind == _Control.CONTROL_SEQUENCE_CORRID:
                    self._corrid = (control_input.name, datatype_from_config(control.data_type))
                else:
                    kind = _FLAG_KINDS[control.kind]
                    self._flags[kind] = self._flag(control_input.name, control)
        self._states = [_read_state(config, state, model_dir) for state in settings.state]
        self.state_outputs = frozenset(state.output_name for state in self._states)
        self._hidden = self.state_outputs - {output.name for output in config.output}
        self.filled = frozenset(
            [*(flag.name for flag in self._flags.values()), *(s.input_name for s in self._states)]
            + ([self._corrid[0]] if self._corrid else [])
        )
        """Every input the batcher fills (clients must not send them)."""

    @property
    def has_state(self) -> bool:
        return bool(self._states)

    def model_request(self, sequence: SequenceRecord, ticket: SequenceTicket) -> WorkItem:
        """The request as the model sees it: the client's inputs, the controls, the state.

        A START (re)starts the state. With implicit state the request asks for the state
        outputs too, and its sink keeps those it sends (decoupled models answer that way).
        """
        item = ticket.item
        inputs = dict(item.inputs)
        inputs.update(
            self.controls(
                start=item.sequence_start,
                end=item.sequence_end,
                ready=True,
                sequence_id=sequence.key,
            )
        )
        sink = item.sink
        requested = item.requested_outputs
        if self._states:
            if item.sequence_start or sequence.state is None:
                sequence.state = self.fresh_state()
            inputs.update(self.state_inputs(sequence.state))
            sink = ticket.sink = StateSink(sink, self.state_outputs, self._hidden)
            if requested is not None:
                requested = (*requested, *sorted(self.state_outputs - set(requested)))
        return WorkItem(
            inputs,
            sink,
            request_id=item.request_id,
            sequence_id=item.sequence_id,
            sequence_start=item.sequence_start,
            sequence_end=item.sequence_end,
            priority=item.priority,
            timeout_us=item.timeout_us,
            parameters=item.parameters,
            requested_outputs=requested,
        )

    def null_request(self, like: WorkItem) -> WorkItem:
        """A not-ready request that keeps an empty direct slot's batch row: zeros shaped as
        ``like``'s inputs, READY false, CORRID 0, a fresh state; nobody gets its answer."""
        inputs = {
            name: np.full_like(value, b"") if value.dtype == np.object_ else np.zeros_like(value)
            for name, value in like.inputs.items()
        }
        inputs.update(self.controls(start=False, end=False, ready=False, sequence_id=0))
        if self._states:
            inputs.update(self.state_inputs(self.fresh_state()))
        return WorkItem(inputs, DISCARD)

    def keep_state(
        self, sequence: SequenceRecord, ticket: SequenceTicket, result: RequestResult
    ) -> RequestResult:
        """Store a finished request's state outputs for the sequence's next request; return
        the result the client gets (without undeclared state outputs)."""
        if not self._states or sequence.state is None:
            return result
        produced = (
            result if isinstance(result, dict) else (ticket.sink.state if ticket.sink else {})
        )
        if produced:
            sequence.state = self.take_state(produced, sequence.state)
        if isinstance(result, dict) and self._hidden:
            return {name: value for name, value in result.items() if name not in self._hidden}
        return result

    def check_request(self, item: WorkItem, batched: bool) -> None:
        """Refuse a request the batcher cannot take: a bad id (``check_id``), an input the
        server fills, a batch of more than one (Triton's sequence batcher takes one)."""
        self.check_id(item.sequence_id)
        for name, value in item.inputs.items():
            if name in self.filled:
                raise InvalidInput(
                    f"input '{name}' of model '{self.model}' is a sequence control or state "
                    "input, which the server fills; do not send it"
                )
            if batched and np.shape(value)[:1] != (1,):
                raise InvalidInput(
                    f"inference request to model '{self.model}' must specify batch-size 1 due "
                    "to requirements of sequence batcher"
                )

    def check_id(self, sequence_id: int | str) -> None:
        """Refuse an id the model cannot take: out of range, or not its CORRID data type.

        Without a CORRID control the model never sees the id as a tensor, so either kind is
        accepted, as Triton does.
        """
        if isinstance(sequence_id, int) and not 0 < sequence_id <= _MAX_ID:
            raise InvalidInput(
                f"sequence id {sequence_id} of a request to model '{self.model}' is out of "
                f"range: uint64 ids are 1 to {_MAX_ID}"
            )
        if self._corrid is None:
            return
        name, datatype = self._corrid
        wants_string = datatype is DataType.BYTES
        if wants_string != isinstance(sequence_id, str):
            kind = "string" if isinstance(sequence_id, str) else "integer"
            wanted = "string" if wants_string else f"{datatype.value.lower()} integer"
            raise InvalidInput(
                f"model '{self.model}' takes {wanted} sequence ids (its CORRID control input "
                f"'{name}' is {datatype.config_name}), got {kind} id {sequence_id!r}"
            )

    def controls(self, *, start: bool, end: bool, ready: bool, sequence_id: int | str) -> dict:
        """The control inputs of one request (``ready=False``: a null request filling a slot)."""
        inputs: dict[str, np.ndarray] = {}
        values = {"start": start and ready, "end": end and ready, "ready": ready}
        for kind, flag in self._flags.items():
            inputs[flag.name] = (flag.true if values[kind] else flag.false).copy()
        if self._corrid is not None:
            name, datatype = self._corrid
            inputs[name] = self._corrid_tensor(datatype, sequence_id if ready else 0)
        return inputs

    def fresh_state(self) -> dict[str, np.ndarray]:
        """A new sequence's state, keyed by state input name (a copy: models may write it)."""
        return {state.input_name: state.initial.copy() for state in self._states}

    def state_inputs(self, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The state as request inputs (with the batch dimension when the model batches)."""
        return {name: value.reshape(self._batch + value.shape) for name, value in state.items()}

    def take_state(
        self, outputs: Mapping[str, Any], previous: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The state after a request: each state output it produced, else the previous value."""
        state = dict(previous)
        for spec in self._states:
            value = outputs.get(spec.output_name)
            if value is not None:
                array = _host_array(value)
                state[spec.input_name] = array.reshape(array.shape[len(self._batch) :])
        return state

    def _flag(self, name: str, control: Any) -> _Flag:
        dtype: type[np.generic]
        if len(control.fp32_false_true):
            values, dtype = list(control.fp32_false_true), np.float32
        elif len(control.int32_false_true):
            values, dtype = list(control.int32_false_true), np.int32
        else:
            values, dtype = list(control.bool_false_true), np.bool_
        shape = (*self._batch, 1)
        false, true = (np.full(shape, value, dtype=dtype) for value in values)
        return _Flag(name, false, true)

    def _corrid_tensor(self, datatype: DataType, sequence_id: int | str) -> np.ndarray:
        shape = (*self._batch, 1)
        if datatype is DataType.BYTES:
            text = sequence_id if isinstance(sequence_id, str) else ""
            return np.full(shape, text.encode("utf-8"), dtype=np.object_)
        # Triton copies the id's low bytes into narrower types; wrapping does the same.
        value = np.array(int(sequence_id), dtype=np.uint64).astype(datatype.numpy_dtype)
        return np.full(shape, value, dtype=datatype.numpy_dtype)


def _host_array(value: Any) -> np.ndarray:
    """A state output as a numpy array (torch tensors come back to the host)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu())
    return np.asarray(value)


def _read_state(config: Any, state: Any, model_dir: str) -> _State:
    """One ``state`` entry with its initial value, checked as Triton checks it."""
    field = f"sequence_batching.state[{state.input_name}]"

    def fail(message: str) -> InvalidConfig:
        return InvalidConfig(message, source=config.name, field=field)

    if not state.input_name or not state.output_name:
        raise fail("a state needs both 'input_name' and 'output_name'")
    datatype = datatype_from_config(state.data_type)
    dims = tuple(int(d) for d in state.dims)
    if len(state.initial_state) > 1:
        raise fail(f"'initial_state' takes at most one entry, got {len(state.initial_state)}")
    if not state.initial_state:
        shape = tuple(1 if d < 0 else d for d in dims)
        return _State(state.input_name, state.output_name, _zeros(datatype, shape))
    initial = state.initial_state[0]
    if initial.data_type != state.data_type:
        raise fail("the data type of 'initial_state' does not match the state's 'data_type'")
    if not initial.name:
        raise fail("'initial_state' needs a 'name'")
    shape = tuple(int(d) for d in initial.dims)
    if len(shape) != len(dims):
        raise fail(f"'initial_state' has {len(shape)} dims, the state has {len(dims)}")
    for got, want in zip(shape, dims):
        if got < 0:
            raise fail(f"'initial_state' dims {list(shape)} must not be variable")
        if want >= 0 and got != want:
            raise fail(f"'initial_state' dims {list(shape)} do not match the state's {list(dims)}")
    if initial.zero_data:
        value = _zeros(datatype, shape)
    elif initial.data_file:
        value = _from_file(datatype, shape, initial.data_file, model_dir, fail)
    else:
        raise fail("'initial_state' needs 'zero_data' or 'data_file'")
    return _State(state.input_name, state.output_name, value)


def _zeros(datatype: DataType, shape: tuple[int, ...]) -> np.ndarray:
    if datatype is DataType.BYTES:
        return np.full(shape, b"", dtype=np.object_)
    return np.zeros(shape, dtype=datatype.numpy_dtype)


def _from_file(
    datatype: DataType, shape: tuple[int, ...], name: str, model_dir: str, fail: Any
) -> np.ndarray:
    if not model_dir:
        raise fail(f"'data_file' {name!r} needs the model directory, which is not known here")
    path = Path(model_dir) / "initial_state" / name
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read initial state file {path}: {exc}") from exc
    if datatype is DataType.BYTES:
        try:
            return deserialize_bytes_tensor(content, shape)
        except ValueError as exc:
            raise fail(f"initial state file {path}: {exc}") from exc
    size = int(np.prod(shape, dtype=np.int64)) * datatype.numpy_dtype.itemsize
    if len(content) < size:
        raise fail(f"initial state file {path} holds {len(content)} bytes, {size} are needed")
    return np.frombuffer(content[:size], dtype=datatype.numpy_dtype).reshape(shape).copy()
