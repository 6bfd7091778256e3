"""Wire an ensemble from Python out of models already in the repository.

    e = repo.add("end-to-end", platform="ensemble")
    e.add_input(noise.inputs["noisy"])                 # an ensemble input feeding a step input
    e.pipe(noise.outputs["cleaned"], clf.inputs["x"])  # one step's output into another's input
    e.add_output(clf.outputs["y"])                     # a step output as an ensemble output
    e.export_version(None)                             # check, write config.pbtxt and 1/

An :class:`EnsemblePlan` records only the wiring, which is what Triton's ``input_map``
(step-model input -> ensemble tensor) and ``output_map`` (step-model output -> ensemble
tensor) say. Data types, dims and batch sizes are read from the composing models' completed
configurations when the plan is built, and everything is checked then, before anything is
written: unconnected step inputs, cycles, batching mismatches (here), then Triton's own
rules (:func:`headrace.config.validate_config` and
:func:`headrace.config.ensemble_rules.check_ensemble_steps`).

Steps are made on first use, one per composing model; ``e.step(model)`` adds a further step
of a model used more than once, whose handles (``step.inputs[...]``) name that step.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.errors import HeadraceError, InvalidConfig
from headrace.repository.handles import TensorHandle, TensorHandles, TensorKind

__all__ = ["LATEST", "EnsemblePlan", "EnsembleStep", "composing_configs"]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig

#: ``model_version`` of a step that runs the newest served version.
LATEST = -1


class _Composing(Protocol):
    """What a step needs of a model entry (:class:`~headrace.repository.ModelEntry` fits)."""

    def versions(self) -> list[int]: ...

    def completed_config(self, version: int | None = None) -> ModelConfig: ...


#: Finds a model of the repository by name; None when there is none (or it cannot be served).
Lookup: TypeAlias = Callable[[str], _Composing | None]


@dataclass(frozen=True)
class EnsembleStep:
    """An explicit step (``ensemble.step(model)``): its handles name this step."""

    index: int
    label: str
    model: str
    version: int
    inputs: TensorHandles
    outputs: TensorHandles


@dataclass
class _Step:
    model: str
    version: int
    label: str  # the model's name, or 'model#2' for its second step
    input_map: dict[str, str] = field(default_factory=dict)  # step input -> ensemble tensor
    output_map: dict[str, str] = field(default_factory=dict)  # step output -> ensemble tensor


def composing_configs(
    steps: Sequence[tuple[str, int]], lookup: Lookup, source: str = ""
) -> list[ModelConfig]:
    """The completed configuration of each ``(model, version)`` step, in order.

    ``version`` -1 is the newest served version. A missing model, a version not served or a
    model that does not complete is an :class:`InvalidConfig` naming the step.
    """
    configs = []
    for index, (model, version) in enumerate(steps):
        path = f"ensemble_scheduling.step[{index}]"
        label = f"step {index} (model '{model}')"
        entry = lookup(model)
        if entry is None:
            raise InvalidConfig(
                f"{label}: model '{model}' is not a servable model of the repository",
                source=source,
                field=f"{path}.model_name",
            )
        if version != LATEST and version < 1:
            raise InvalidConfig(
                f"{label}: model_version must be -1 (the newest) or a version >= 1, got {version}",
                source=source,
                field=f"{path}.model_version",
            )
        try:
            served = entry.versions()
            if not served or (version != LATEST and version not in served):
                wanted = "any version" if version == LATEST else f"version {version}"
                raise InvalidConfig(
                    f"model '{model}' serves {served or 'no versions'}, not {wanted}"
                )
            configs.append(entry.completed_config(served[-1] if version == LATEST else version))
        except HeadraceError as exc:
            raise InvalidConfig(f"{label}: {exc.message}", source=source, field=path) from exc
    return configs


class EnsemblePlan:
    """The wiring of one ensemble; :meth:`build` turns it into a checked ``ModelConfig``.

    The batch size is the configuration's when it is above 0; else ``max_batch_size`` when
    given (0: the ensemble does not batch); else the smallest of the steps' when every step
    batches, and 0 when one does not. A wiring call that fails changes nothing.
    """

    def __init__(self, name: str, max_batch_size: int | None = None, source: str = "") -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.source = source
        self.steps: list[_Step] = []
        self._default: dict[str, int] = {}  # model -> its default step
        self.inputs: dict[str, tuple[int, str]] = {}  # ensemble input -> (step, its input)
        self.outputs: dict[str, tuple[int, str]] = {}  # ensemble output -> (step, its output)

    @classmethod
    def from_config(cls, config: ModelConfig, source: str = "") -> EnsemblePlan:
        """The plan an ensemble's ``config.pbtxt`` describes, to extend it and export again."""
        plan = cls(config.name, None, source)
        for proto in config.ensemble_scheduling.step:
            index = plan.add_step(proto.model_name, proto.model_version, check=False)
            plan._default.setdefault(proto.model_name, index)
            plan.steps[index].input_map.update(proto.input_map)
            plan.steps[index].output_map.update(proto.output_map)
        for tensor in config.input:
            readers = [
                (index, key)
                for index, step in enumerate(plan.steps)
                for key, value in sorted(step.input_map.items())
                if value == tensor.name
            ]
            if readers:
                plan.inputs[tensor.name] = readers[0]
        for tensor in config.output:
            writers = [
                (index, key)
                for index, step in enumerate(plan.steps)
                for key, value in sorted(step.output_map.items())
                if value == tensor.name
            ]
            if writers:
                plan.outputs[tensor.name] = writers[0]
        return plan

    def _fail(self, message: str, field: str = "") -> NoReturn:
        raise InvalidConfig(message, source=self.source, field=field)

    # -- wiring ----------------------------------------------------------------------------

    @contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        saved = copy.deepcopy((self.steps, self._default, self.inputs, self.outputs))
        try:
            yield
        except BaseException:
            self.steps, self._default, self.inputs, self.outputs = saved
            raise

    def add_step(self, model: str, version: int = LATEST, *, check: bool = True) -> int:
        """A new step running ``model`` (``version`` -1: the newest served); its index."""
        if check:
            self.check_step(model, version)
        count = sum(step.model == model for step in self.steps)
        label = model if count == 0 else f"{model}#{count + 1}"
        self.steps.append(_Step(model, version, label))
        return len(self.steps) - 1

    def check_step(self, model: str, version: int) -> None:
        """Refuse a step of the ensemble itself, or a version that is neither -1 nor >= 1."""
        if model == self.name:
            self._fail(f"ensemble '{self.name}' cannot be a step of itself")
        if version != LATEST and (isinstance(version, bool) or version < 1):
            self._fail(f"a step's version must be -1 (the newest) or >= 1, got {version!r}")

    def add_input(self, handle: TensorHandle, name: str | None = None) -> str:
        """An ensemble input (``handle``'s name unless ``name``) feeding ``handle``'s step."""
        with self._all_or_nothing():
            self._expect(handle, "input", "add_input")
            tensor = name or handle.name
            if tensor not in self.inputs:
                self._check_free(tensor, "input")
            index = self._step_of(handle)
            self._connect(index, handle.name, tensor)
            self.inputs.setdefault(tensor, (index, handle.name))
            return tensor

    def pipe(self, output: TensorHandle, input: TensorHandle) -> str:
        """Feed step output ``output`` to step input ``input``; the ensemble tensor's name."""
        with self._all_or_nothing():
            self._expect(output, "output", "pipe")
            self._expect(input, "input", "pipe")
            source = self._step_of(output)
            target = self._step_of(input)
            tensor = self.steps[source].output_map.get(output.name)
            if tensor is None:
                tensor = self._fresh(f"{self.steps[source].label}.{output.name}")
                self.steps[source].output_map[output.name] = tensor
            self._connect(target, input.name, tensor)
            return tensor

    def add_output(self, handle: TensorHandle, name: str | None = None) -> str:
        """Step output ``handle`` as an ensemble output (its name unless ``name``)."""
        with self._all_or_nothing():
            self._expect(handle, "output", "add_output")
            tensor = name or handle.name
            index = self._step_of(handle)
            step = self.steps[index]
            current = step.output_map.get(handle.name)
            if current in self.outputs:
                self._fail(
                    f"{handle} (step '{step.label}') is already the ensemble output {current!r}"
                )
            if tensor != current:
                self._check_free(tensor, "output")
            if current is None:
                step.output_map[handle.name] = tensor
            else:  # piped already: the internal tensor becomes the ensemble output
                self._rename(current, tensor)
            self.outputs[tensor] = (index, handle.name)
            return tensor

    def _expect(self, handle: object, kind: TensorKind, call: str) -> None:
        if not isinstance(handle, TensorHandle):
            self._fail(f"{call} takes tensor handles such as entry.{kind}s['name'], got {handle!r}")
        if handle.kind != kind:
            self._fail(f"{call} needs a model {kind} here (entry.{kind}s[...]), got {handle}")
        if handle.model == self.name:
            self._fail(f"ensemble '{self.name}' cannot be a step of itself ({handle})")

    def _step_of(self, handle: TensorHandle) -> int:
        if handle.step is None:
            index = self._default.get(handle.model)
            if index is None:
                index = self._default[handle.model] = self.add_step(handle.model)
            return index
        if not 0 <= handle.step < len(self.steps) or self.steps[handle.step].model != handle.model:
            self._fail(f"{handle} names step {handle.step}, which is not a step of '{self.name}'")
        return handle.step

    def _connect(self, index: int, input_name: str, tensor: str) -> None:
        step = self.steps[index]
        current = step.input_map.get(input_name)
        if current is not None and current != tensor:
            self._fail(
                f"input {input_name!r} of step '{step.label}' is already fed by ensemble "
                f"tensor {current!r}; a step input takes one tensor"
            )
        step.input_map[input_name] = tensor

    def _tensors(self) -> set[str]:
        names = set(self.inputs) | set(self.outputs)
        for step in self.steps:
            names.update(step.input_map.values(), step.output_map.values())
        return names

    def _check_free(self, tensor: str, kind: str) -> None:
        if not tensor:
            self._fail(f"an ensemble {kind} needs a name")
        if tensor in self._tensors():
            self._fail(f"ensemble '{self.name}' already has a tensor named {tensor!r}")

    def _fresh(self, base: str) -> str:
        taken = self._tensors()
        name, count = base, 2
        while name in taken:
            name, count = f"{base}_{count}", count + 1
        return name

    def _rename(self, old: str, new: str) -> None:
        for step in self.steps:
            for mapping in (step.input_map, step.output_map):
                for key, value in mapping.items():
                    if value == old:
                        mapping[key] = new

    # -- building --------------------------------------------------------------------------

    def order(self) -> list[int]:
        """Step indices with every step after the steps it reads from; a cycle is refused."""
        writers = {t: i for i, step in enumerate(self.steps) for t in step.output_map.values()}
        reads = [
            {writers[t]: t for t in step.input_map.values() if t in writers} for step in self.steps
        ]
        remaining = list(range(len(self.steps)))
        ordered: list[int] = []
        while remaining:
            ready = [i for i in remaining if not any(dep in remaining for dep in reads[i])]
            if not ready:
                self._fail(self._describe_cycle(remaining, reads), "ensemble_scheduling.step")
            ordered.append(ready[0])
            remaining.remove(ready[0])
        return ordered

    def _describe_cycle(self, remaining: list[int], reads: list[dict[int, str]]) -> str:
        path = [remaining[0]]
        while True:
            following = min(dep for dep in reads[path[-1]] if dep in remaining)
            if following in path:
                cycle = [*path[path.index(following) :], following]
                break
            path.append(following)
        links = [
            f"step '{self.steps[a].label}' reads {reads[a][b]!r} from step '{self.steps[b].label}'"
            for a, b in itertools.pairwise(cycle)
        ]
        return f"ensemble '{self.name}' has a cycle: " + "; ".join(links)

    def build(self, base: ModelConfig, lookup: Lookup) -> ModelConfig:
        """``base`` with this wiring, checked against the composing models' configurations."""
        from headrace.config import fill_defaults, validate_config
        from headrace.config.ensemble_rules import check_ensemble_steps

        if not self.steps:
            self._fail(
                f"ensemble '{self.name}' has no steps: wire models with add_input, pipe "
                "and add_output first",
                "ensemble_scheduling.step",
            )
        if not self.inputs:
            self._fail(f"ensemble '{self.name}' has no inputs: add them with add_input", "input")
        if not self.outputs:
            self._fail(f"ensemble '{self.name}' has no outputs: add them with add_output", "output")
        order = self.order()
        pairs = [(self.steps[i].model, self.steps[i].version) for i in order]
        composing = composing_configs(pairs, lookup, self.source)
        by_step = dict(zip(order, composing))
        for index in order:
            self._check_connected(index, by_step[index])
        config = ModelConfig()
        config.CopyFrom(base)
        config.name = self.name
        config.platform = ENSEMBLE_PLATFORM
        config.backend = ""
        config.max_batch_size = self._batch_size(base, composing)
        del config.input[:]
        del config.output[:]
        config.ClearField("ensemble_scheduling")
        for name, (index, key) in self.inputs.items():
            self._add_tensor(config, "input", name, index, key, by_step[index])
        for name, (index, key) in self.outputs.items():
            self._add_tensor(config, "output", name, index, key, by_step[index])
        for index in order:
            step = self.steps[index]
            proto = config.ensemble_scheduling.step.add(
                model_name=step.model, model_version=step.version
            )
            proto.input_map.update(step.input_map)
            proto.output_map.update(step.output_map)
        checked = ModelConfig()
        checked.CopyFrom(config)
        fill_defaults(checked, source=self.source)
        validate_config(checked, self.source)
        check_ensemble_steps(checked, composing, self.source)
        return config

    def _check_connected(self, index: int, model: ModelConfig) -> None:
        step = self.steps[index]
        for tensor in model.input:
            if tensor.name not in step.input_map and not tensor.optional:
                self._fail(
                    f"input {tensor.name!r} of step '{step.label}' is not connected: feed it "
                    "with add_input or pipe",
                    "ensemble_scheduling.step",
                )

    def _batch_size(self, base: ModelConfig, composing: list[ModelConfig]) -> int:
        if base.max_batch_size > 0:
            return base.max_batch_size
        if self.max_batch_size is not None:
            return self.max_batch_size
        sizes = [config.max_batch_size for config in composing]
        return min(sizes) if all(size > 0 for size in sizes) else 0

    def _add_tensor(
        self,
        config: ModelConfig,
        kind: TensorKind,
        name: str,
        index: int,
        key: str,
        model: ModelConfig,
    ) -> None:
        """Ensemble tensor ``name`` typed as ``key`` of step ``index``, dims per batching."""
        step = self.steps[index]
        declared = {t.name: t for t in (model.input if kind == "input" else model.output)}
        if key not in declared:
            self._fail(
                f"ensemble {kind} {name!r}: model '{step.model}' of step '{step.label}' has "
                f"no {kind} {key!r} ({kind}s: {list(declared)})",
                kind,
            )
        source = declared[key]
        dims = list(source.dims)
        if config.max_batch_size > 0 and model.max_batch_size == 0:
            if len(dims) < 2:
                self._fail(
                    f"ensemble {kind} {name!r}: step '{step.label}' does not batch and its "
                    f"{kind} {key!r} has dims {dims}, with no dimension to batch over; an "
                    f"ensemble with max_batch_size {config.max_batch_size} needs one "
                    "(give the ensemble max_batch_size=0)",
                    "max_batch_size",
                )
            dims = dims[1:]
        elif config.max_batch_size == 0 and model.max_batch_size > 0:
            dims = [-1, *dims]
        tensor = config.input.add() if kind == "input" else config.output.add()
        tensor.name = name
        tensor.data_type = source.data_type
        tensor.dims.extend(dims)
