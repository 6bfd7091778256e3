"""A configuration's ``reshape``: the shapes clients see against the shapes the model sees.

Triton's rule, applied here for every backend: a tensor's ``dims`` (with the batch dimension
in front when ``max_batch_size > 0``) are the protocol's shape, the one clients send and
receive and requests are validated against; ``reshape { shape: [...] }`` is the model's shape.
An input is reshaped from its ``dims`` to its ``reshape`` just before the model runs (a batch
keeps its batch dimension in front, the reshape applies to each item's shape); an output with
a ``reshape`` comes back from the model in that shape and is reshaped to its ``dims`` before
it is returned. ``dims: [1]`` with ``reshape { shape: [] }`` feeds a batching model a tensor
of shape ``[batch]``.

Variable-size dimensions pair up in order: the i-th ``-1`` of the reshape takes the size of the
i-th ``-1`` of the dims (and back for outputs). Configuration validation
(:mod:`headrace.config.validate`) has already refused reshapes that cannot hold the same
elements as their dims, so a tensor that does not fit here was not validated (an offline run)
or comes from a model that broke its own shape.

:class:`ModelInstance <headrace.engine.instance.ModelInstance>` applies :class:`Reshapes` around
``execute`` and ``execute_requests`` (and wraps the sinks of request-list items, so responses a
decoupled model sends are reshaped too); backends never see a protocol shape of a reshaped
tensor. Arrays are numpy or torch: only ``.shape`` and ``.reshape`` are used (a view when the
tensor is contiguous, so no copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidInput, ModelExecutionError
from headrace.types import Outputs, ResponseSink, WorkItem

__all__ = ["Reshapes", "ReshapingSink", "TensorReshape"]

_VARIABLE = -1


@dataclass(frozen=True, slots=True)
class TensorReshape:
    """One tensor's two per-item shapes: ``dims`` (the protocol's) and ``shape`` (the model's)."""

    name: str
    dims: tuple[int, ...]
    shape: tuple[int, ...]

    def to_model(self, array: Any, batched: bool) -> Any:
        """``array`` in the protocol's shape, reshaped to the model's."""
        target = _convert(tuple(array.shape), self.dims, self.shape, batched)
        if target is None:
            raise InvalidInput(
                f"input '{self.name}' has shape {list(array.shape)}, which does not fit its "
                f"dims {list(self.dims)} (reshaped to {list(self.shape)} for the model)"
            )
        return array.reshape(target)

    def to_protocol(self, array: Any, batched: bool) -> Any:
        """``array`` in the model's shape, reshaped to the protocol's."""
        target = _convert(tuple(array.shape), self.shape, self.dims, batched)
        if target is None:
            raise ModelExecutionError(
                f"the model returned output '{self.name}' with shape {list(array.shape)}, "
                f"which does not fit its reshape {list(self.shape)} (dims {list(self.dims)})"
            )
        return array.reshape(target)


class Reshapes:
    """Every reshaped tensor of one configuration; :meth:`of` is None when there is none."""

    def __init__(
        self,
        inputs: Mapping[str, TensorReshape],
        outputs: Mapping[str, TensorReshape],
        batched: bool,
    ) -> None:
        self.inputs = dict(inputs)
        self.outputs = dict(outputs)
        self.batched = batched

    @classmethod
    def of(cls, config: model_config_pb2.ModelConfig) -> Reshapes | None:
        inputs = _reshaped(config.input)
        outputs = _reshaped(config.output)
        if not inputs and not outputs:
            return None
        return cls(inputs, outputs, config.max_batch_size > 0)

    def model_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs as the model takes them (protocol shapes in)."""
        shaped = dict(inputs)
        for name, reshape in self.inputs.items():
            if name in shaped:
                shaped[name] = reshape.to_model(shaped[name], self.batched)
        return shaped

    def protocol_outputs(self, outputs: Outputs | None) -> Outputs | None:
        """The outputs as clients receive them (model shapes in)."""
        if outputs is None or not self.outputs:
            return outputs
        shaped = dict(outputs)
        for name, reshape in self.outputs.items():
            if name in shaped:
                shaped[name] = reshape.to_protocol(shaped[name], self.batched)
        return shaped

    def model_items(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Work items whose inputs are the model's and whose sinks reshape what they are sent."""
        return [self._model_item(item) for item in items]

    def _model_item(self, item: WorkItem) -> WorkItem:
        sink = item.sink if not self.outputs else ReshapingSink(item.sink, self)
        return WorkItem(
            self.model_inputs(item.inputs),
            sink,
            request_id=item.request_id,
            sequence_id=item.sequence_id,
            sequence_start=item.sequence_start,
            sequence_end=item.sequence_end,
            priority=item.priority,
            timeout_us=item.timeout_us,
            parameters=item.parameters,
            requested_outputs=item.requested_outputs,
        )


class ReshapingSink:
    """A work item's sink seen by a model: outputs sent to it are reshaped to their dims."""

    __slots__ = ("_inner", "_reshapes")

    def __init__(self, inner: ResponseSink, reshapes: Reshapes) -> None:
        self._inner = inner
        self._reshapes = reshapes

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            shaped = self._reshapes.protocol_outputs(outputs)
        except ModelExecutionError as exc:
            self._inner.fail(exc, final=final)
            return
        self._inner.send(shaped, final=final, parameters=parameters)

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self._inner.fail(error, final=final)

    @property
    def done(self) -> bool:
        return self._inner.done


def _reshaped(tensors: Any) -> dict[str, TensorReshape]:
    return {
        t.name: TensorReshape(t.name, tuple(t.dims), tuple(t.reshape.shape))
        for t in tensors
        if t.HasField("reshape")
    }


def _convert(
    actual: tuple[int, ...], source: tuple[int, ...], target: tuple[int, ...], batched: bool
) -> tuple[int, ...] | None:
    """``actual`` (shaped as ``source``) as ``target``; None when it does not fit ``source``."""
    lead = actual[:1] if batched else ()
    item = actual[1:] if batched else actual
    if (batched and not actual) or len(item) != len(source):
        return None
    if any(want not in (_VARIABLE, got) for want, got in zip(source, item)):
        return None
    variable = iter([got for want, got in zip(source, item) if want == _VARIABLE])
    try:
        shape = tuple(next(variable) if dim == _VARIABLE else dim for dim in target)
    except StopIteration:
        return None
    if next(variable, None) is not None or _count(shape) != _count(item):
        return None
    return (*lead, *shape)


def _count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
