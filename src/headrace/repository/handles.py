"""Tensor handles: one input or output of one model, named so an ensemble can wire it.

``entry.inputs["x"]`` and ``entry.outputs["y"]`` are read from the entry's completed
configuration (its newest served version). A handle is a snapshot for wiring: an ensemble
reads its models' configurations again when it is exported, so a model exported again
later is checked as it is then.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.types import DataType

__all__ = ["TensorHandle", "TensorHandles", "TensorKind", "tensor_handles"]

TensorKind: TypeAlias = Literal["input", "output"]


@dataclass(frozen=True)
class TensorHandle:
    """An input or output of model ``model``; ``dims`` exclude the batch dimension.

    ``batched`` says whether the model batches (``max_batch_size > 0``). ``step`` is set on
    handles of an explicit ensemble step (``ensemble.step(model)``): the step's index in
    that ensemble; None means the model's one default step.
    """

    model: str
    name: str
    kind: TensorKind
    datatype: DataType
    dims: tuple[int, ...]
    batched: bool = False
    optional: bool = False
    step: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The full shape: ``-1`` first for the batch dimension when the model batches."""
        return (-1, *self.dims) if self.batched else self.dims

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}' of model '{self.model}'"


class TensorHandles:
    """A model's inputs or outputs: ``handles["x"]`` by name, iteration in config order."""

    def __init__(self, model: str, kind: TensorKind, handles: Sequence[TensorHandle]) -> None:
        self.model = model
        self.kind = kind
        self._by_name = {handle.name: handle for handle in handles}

    def names(self) -> list[str]:
        return list(self._by_name)

    def __getitem__(self, name: str) -> TensorHandle:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"model '{self.model}' has no {self.kind} {name!r} ({self.kind}s: {self.names()})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[TensorHandle]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"TensorHandles({self.model!r}, {self.kind}s={self.names()})"


def tensor_handles(
    config: model_config_pb2.ModelConfig, kind: TensorKind, *, step: int | None = None
) -> TensorHandles:
    """The handles of ``config``'s inputs or outputs (``step``: see :class:`TensorHandle`)."""
    from headrace.config import input_specs, output_specs

    specs = input_specs(config) if kind == "input" else output_specs(config)
    batched = config.max_batch_size > 0
    return TensorHandles(
        config.name,
        kind,
        [
            TensorHandle(
                config.name,
                spec.name,
                kind,
                spec.datatype,
                spec.dims,
                batched=batched,
                optional=spec.optional,
                step=step,
            )
            for spec in specs
        ],
    )
