"""Turn what a model returned into the ``{output name: value}`` dict the Backend contract promises.

Models return a dict keyed by output name, a sequence in output order, or one bare value when
there is one output. Backends that run user code (callables, torch modules) share this so the
same return shapes work everywhere and mistakes fail with a message naming the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from headrace.errors import ModelExecutionError

__all__ = ["check_batch_size", "collect_outputs"]


def collect_outputs(
    result: Any,
    names: Sequence[str],
    model: str,
    positions: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Key ``result`` by output name.

    ``positions[i]`` is where output ``names[i]`` sits in a returned sequence (default: config
    order). Raises :class:`ModelExecutionError` naming missing outputs or a wrong count.
    """
    if isinstance(result, Mapping):
        missing = [name for name in names if name not in result]
        if missing:
            raise ModelExecutionError(
                f"model '{model}' returned outputs {sorted(map(str, result))}, missing {missing}"
            )
        return {name: result[name] for name in names}
    if isinstance(result, tuple | list):
        order = list(positions) if positions is not None else list(range(len(names)))
        needed = max(order, default=-1) + 1
        if len(result) < needed or (positions is None and len(result) != len(names)):
            raise ModelExecutionError(
                f"model '{model}' returned {len(result)} values, expected {len(names)} "
                f"outputs {list(names)}"
            )
        return {name: result[index] for name, index in zip(names, order)}
    if len(names) != 1:
        raise ModelExecutionError(
            f"model '{model}' returned a single {type(result).__name__}, expected "
            f"{len(names)} outputs {list(names)} (return a dict or a tuple)"
        )
    return {names[0]: result}


def check_batch_size(outputs: Mapping[str, Any], batch_size: int, model: str) -> None:
    """Raise :class:`ModelExecutionError` naming every output whose first dim is not the batch."""
    wrong = {
        name: tuple(value.shape)
        for name, value in outputs.items()
        if len(value.shape) == 0 or int(value.shape[0]) != batch_size
    }
    if wrong:
        details = ", ".join(f"'{name}' has shape {list(shape)}" for name, shape in wrong.items())
        raise ModelExecutionError(
            f"model '{model}' got a batch of {batch_size}, but output {details}"
        )
