"""``pb_utils.ModelConfig``: the editable configuration a python model's ``auto_complete_config`` sees.

It wraps the JSON dict form of a ``ModelConfig`` (field names as in config.pbtxt). A model may
only add inputs and outputs, raise ``max_batch_size``, turn on dynamic batching and set the
transaction policy; anything that contradicts what config.pbtxt already says raises
``ValueError`` naming the model, the field and both values, as Triton does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ModelConfig"]

_INPUT_KEYS = frozenset({"name", "data_type", "dims", "optional"})
_OUTPUT_KEYS = frozenset({"name", "data_type", "dims"})
_REQUIRED_KEYS = ("name", "data_type", "dims")


class ModelConfig:
    """The model configuration under auto-completion, as a dict a model may extend."""

    def __init__(self, model_config: str | Mapping[str, Any]) -> None:
        if isinstance(model_config, str):
            data = json.loads(model_config)
        else:
            data = copy.deepcopy(dict(model_config))
        data.setdefault("name", "")
        data.setdefault("max_batch_size", 0)
        data.setdefault("input", [])
        data.setdefault("output", [])
        self._model_config: dict[str, Any] = data

    @property
    def _name(self) -> str:
        return str(self._model_config.get("name", ""))

    def as_dict(self) -> dict[str, Any]:
        """The configuration as a dict (treat as read-only; use the setters to change it)."""
        return self._model_config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        """Set ``max_batch_size``; a config that already allows more is an error."""
        current = int(self._model_config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"model '{self._name}': configuration sets max_batch_size {current}, "
                f"auto_complete_config sets {max_batch_size}"
            )
        self._model_config["max_batch_size"] = int(max_batch_size)

    def set_dynamic_batching(self) -> None:
        """Use the dynamic batcher (default settings) unless another scheduler is configured."""
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(
                    f"model '{self._name}': configuration uses {other}, "
                    "auto_complete_config asks for dynamic_batching"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, transaction_policy_dict: Mapping[str, Any]) -> None:
        """Set ``model_transaction_policy`` (only its ``decoupled`` key exists)."""
        unknown = set(transaction_policy_dict) - {"decoupled"}
        if unknown:
            raise ValueError(
                f"model '{self._name}': model_transaction_policy keys {sorted(unknown)} are "
                "not allowed in auto_complete_config, only 'decoupled'"
            )
        wanted = bool(transaction_policy_dict.get("decoupled", False))
        existing = self._model_config.get("model_transaction_policy")
        if existing is not None and bool(existing.get("decoupled", False)) != wanted:
            raise ValueError(
                f"model '{self._name}': configuration sets decoupled="
                f"{bool(existing.get('decoupled', False))}, auto_complete_config sets {wanted}"
            )
        self._model_config["model_transaction_policy"] = {"decoupled": wanted}

    def add_input(self, input: Mapping[str, Any]) -> None:
        """Declare an input; merges into a same-named input that leaves type or dims open."""
        self._add("input", input, _INPUT_KEYS)

    def add_output(self, output: Mapping[str, Any]) -> None:
        """Declare an output; merges into a same-named output that leaves type or dims open."""
        self._add("output", output, _OUTPUT_KEYS)

    def _add(self, kind: str, tensor: Mapping[str, Any], allowed: frozenset[str]) -> None:
        label = f"{kind} '{tensor.get('name', '?')}'"
        extra = sorted(set(tensor) - allowed)
        if extra:
            raise ValueError(
                f"model '{self._name}': {label} in auto_complete_config has properties "
                f"{extra}; allowed are {sorted(allowed)}"
            )
        for key in _REQUIRED_KEYS:
            if key not in tensor:
                raise ValueError(
                    f"model '{self._name}': {label} in auto_complete_config lacks '{key}'"
                )
        entry = {key: copy.deepcopy(value) for key, value in tensor.items()}
        entry["dims"] = [int(d) for d in entry["dims"]]
        entries: list[dict[str, Any]] = self._model_config.setdefault(kind, [])
        for existing in entries:
            if existing.get("name") == entry["name"]:
                self._merge(label, existing, entry)
                return
        entries.append(entry)

    def _merge(self, label: str, existing: dict[str, Any], entry: dict[str, Any]) -> None:
        have_type = existing.get("data_type", "TYPE_INVALID")
        if have_type not in ("TYPE_INVALID", entry["data_type"]):
            raise ValueError(
                f"model '{self._name}': {label} has data_type {have_type} in the "
                f"configuration, the model provides {entry['data_type']}"
            )
        have_dims = [int(d) for d in existing.get("dims", [])]
        if have_dims and have_dims != entry["dims"]:
            raise ValueError(
                f"model '{self._name}': {label} has dims {have_dims} in the configuration, "
                f"the model expects {entry['dims']}"
            )
        existing.update(entry)
