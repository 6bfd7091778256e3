"""Ensembles: a request runs through a DAG of other models' schedulers.

An ensemble (``platform: "ensemble"``, ``ensemble_scheduling { step [...] }``) has no
instances of its own. Each request keeps a table of named tensors, starting with its inputs;
a step runs as soon as every ensemble tensor its ``input_map`` names is in the table, as one
request to its model's own scheduler (found through the :class:`Router` per request, so a
reloaded model is used from the next request on), and its ``output_map`` adds the outputs it
produced. Steps whose inputs are ready run concurrently (fan-out), a step waits for all the
steps it reads from (fan-in), and steps of different requests overlap, each batched by its
own model's batcher. Tensors pass from step to step as the same arrays, without copies.

The request is answered with the ensemble's outputs once every step has run; the first step
that fails fails the request, naming the step and its model, and the steps still running
for it are withdrawn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from headrace.config import ModelConfig, input_specs, output_specs
from headrace.engine.stats import StatsSink
from headrace.errors import HeadraceError, InvalidConfig, InvalidInput, Unavailable, Unsupported
from headrace.scheduling.base import Scheduler
from headrace.scheduling.dispatch import NullStats
from headrace.scheduling.router import Route, Router
from headrace.scheduling.sinks import FutureSink
from headrace.types import DataType, Outputs, TensorSpec, WorkItem

__all__ = ["EnsembleScheduler", "EnsembleStep"]


@dataclass(frozen=True)
class EnsembleStep:
    """One step: a model (and version, "" for the newest) and its tensor maps.

    ``inputs`` maps the step model's input names to ensemble tensor names, ``outputs`` the
    step model's output names to ensemble tensor names (Triton's ``input_map``/``output_map``).
    """

    index: int
    model: str
    version: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]

    @property
    def label(self) -> str:
        return f"step {self.index} (model '{self.model}')"


class EnsembleScheduler(Scheduler):
    """Runs each request through the steps of one ensemble configuration."""

    def __init__(self, config: ModelConfig, router: Router, stats: StatsSink | None = None) -> None:
        self.name = config.name
        self.steps = [
            EnsembleStep(
                index,
                step.model_name,
                "" if step.model_version < 0 else str(step.model_version),
                dict(step.input_map),
                dict(step.output_map),
            )
            for index, step in enumerate(config.ensemble_scheduling.step)
        ]
        self._config = config
        self._outputs = [tensor.name for tensor in config.output]
        self._router = router
        self._stats: StatsSink = stats if stats is not None else NullStats()
        self._running: set[asyncio.Task[None]] = set()
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- load time ---------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse, naming the step, what cannot run: unknown tensors or models, mismatched
        types or shapes, a decoupled step, a batching ensemble over a model that does not."""
        produced: dict[str, tuple[TensorSpec, str]] = {
            spec.name: (spec, "ensemble input") for spec in input_specs(self._config)
        }
        batched = self._config.max_batch_size > 0
        routes = {step.index: self._route(step) for step in self.steps}
        for step in _in_dependency_order(self.steps, set(produced)):
            route = routes[step.index]
            config = route.config
            if config.model_transaction_policy.decoupled:
                raise Unsupported(
                    f"ensemble '{self.name}' {step.label}: decoupled models cannot be ensemble "
                    "steps yet"
                )
            if batched and config.max_batch_size < self._config.max_batch_size:
                raise InvalidConfig(
                    f"ensemble '{self.name}' {step.label}: its max_batch_size "
                    f"{config.max_batch_size} is below the ensemble's "
                    f"{self._config.max_batch_size}",
                    field=f"ensemble_scheduling.step[{step.index}]",
                )
            own_inputs = {spec.name: spec for spec in input_specs(config)}
            for name, tensor in step.inputs.items():
                if name not in own_inputs:
                    raise InvalidConfig(
                        f"ensemble '{self.name}' {step.label}: the model has no input '{name}' "
                        f"(inputs: {sorted(own_inputs)})",
                        field=f"ensemble_scheduling.step[{step.index}].input_map",
                    )
                source, where = produced[tensor]
                _check_match(self.name, step, tensor, source, where, own_inputs[name])
            for name, spec in own_inputs.items():
                if name not in step.inputs and not spec.optional:
                    raise InvalidConfig(
                        f"ensemble '{self.name}' {step.label}: input '{name}' is not mapped",
                        field=f"ensemble_scheduling.step[{step.index}].input_map",
                    )
            own_outputs = {spec.name: spec for spec in output_specs(config)}
            for name, tensor in step.outputs.items():
                if name not in own_outputs:
                    raise InvalidConfig(
                        f"ensemble '{self.name}' {step.label}: the model has no output '{name}' "
                        f"(outputs: {sorted(own_outputs)})",
                        field=f"ensemble_scheduling.step[{step.index}].output_map",
                    )
                produced[tensor] = (own_outputs[name], step.label)
        for spec in output_specs(self._config):
            source, where = produced[spec.name]
            _check_match(self.name, None, spec.name, source, where, spec)

    # -- Scheduler ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._running)

    def submit(self, item: WorkItem) -> asyncio.Task[None]:
        if self._draining:
            raise Unavailable(f"model '{self.name}' is shutting down; request refused")
        task = asyncio.get_running_loop().create_task(self._run(item))
        self._running.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)
        return task

    def withdraw(self, ticket: asyncio.Task[None]) -> None:
        ticket.cancel()

    async def drain(self) -> None:
        self._draining = True
        await self._idle.wait()

    # -- one request -------------------------------------------------------------------------

    async def _run(self, item: WorkItem) -> None:
        start_ns = time.monotonic_ns()
        success = False
        try:
            outputs = await self._execute(item)
        except asyncio.CancelledError:
            raise  # the caller went away: nobody to answer
        except HeadraceError as exc:
            item.sink.fail(exc)
        except Exception as exc:
            item.sink.fail(_internal(self, exc))
        else:
            success = True
            item.sink.send(outputs, final=True)
        finally:
            total_ns = time.monotonic_ns() - start_ns
            self._stats.record_request(success=success, queue_ns=0, total_ns=total_ns)
            if success:  # as Triton counts an ensemble: one execution per request, all infer
                self._stats.record_batch(
                    batch_size=self._rows(item),
                    compute_input_ns=0,
                    compute_infer_ns=total_ns,
                    compute_output_ns=0,
                )

    async def _execute(self, item: WorkItem) -> Outputs:
        """Run every step as its inputs become ready; the ensemble's outputs."""
        tensors: dict[str, Any] = dict(item.inputs)
        waiting = list(self.steps)
        running: dict[asyncio.Task[Outputs], EnsembleStep] = {}
        try:
            while waiting or running:
                for step in [s for s in waiting if all(t in tensors for t in s.inputs.values())]:
                    waiting.remove(step)
                    running[asyncio.ensure_future(self._step(step, item, tensors))] = step
                if not running:  # check() refuses such ensembles at load time
                    raise InvalidInput(
                        f"ensemble '{self.name}': steps {[s.index for s in waiting]} can never "
                        "run (no step writes their inputs)"
                    )
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    produced = task.result()
                    for name, tensor in step.outputs.items():
                        tensors[tensor] = produced[name]
        finally:
            for task in running:  # a step failed, or the caller went away
                task.cancel()
        return {name: tensors[name] for name in self._outputs}

    async def _step(self, step: EnsembleStep, item: WorkItem, tensors: dict[str, Any]) -> Outputs:
        route = self._route(step)
        inputs = {name: tensors[tensor] for name, tensor in step.inputs.items()}
        _check_inputs(self.name, step, route, inputs)
        sink = FutureSink(asyncio.get_running_loop())
        work = WorkItem(
            inputs,
            sink,
            request_id=item.request_id,
            sequence_id=item.sequence_id,
            sequence_start=item.sequence_start,
            sequence_end=item.sequence_end,
            priority=item.priority,
            timeout_us=item.timeout_us,
            parameters=item.parameters,
            requested_outputs=tuple(step.outputs),
        )
        try:
            ticket = route.scheduler.submit(work)
        except HeadraceError as exc:
            raise _named(self, step, exc) from exc
        try:
            return await sink.future
        except asyncio.CancelledError:
            route.scheduler.withdraw(ticket)
            raise
        except HeadraceError as exc:
            raise _named(self, step, exc) from exc

    def _route(self, step: EnsembleStep) -> Route:
        try:
            return self._router.route(step.model, step.version)
        except HeadraceError as exc:
            raise _named(self, step, exc) from exc

    def _rows(self, item: WorkItem) -> int:
        if self._config.max_batch_size <= 0:
            return 1
        for value in item.inputs.values():
            return int(np.shape(value)[0])
        return 1

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not self._running:
            self._idle.set()


def _in_dependency_order(steps: list[EnsembleStep], ready: set[str]) -> list[EnsembleStep]:
    """The steps in an order where each comes after the steps it reads from."""
    ordered: list[EnsembleStep] = []
    pending = list(steps)
    while pending:
        runnable = [s for s in pending if all(t in ready for t in s.inputs.values())]
        if not runnable:
            missing = sorted({t for s in pending for t in s.inputs.values()} - ready)
            raise InvalidConfig(
                f"steps {[s.index for s in pending]} read ensemble tensors {missing}, which no "
                "runnable step writes (a cycle, or a tensor nobody produces)",
                field="ensemble_scheduling.step",
            )
        for step in runnable:
            pending.remove(step)
            ready.update(step.outputs.values())
            ordered.append(step)
    return ordered


def _check_match(
    ensemble: str,
    step: EnsembleStep | None,
    tensor: str,
    source: TensorSpec,
    where: str,
    target: TensorSpec,
) -> None:
    """``source`` (written by ``where``) must fit ``target``: same type, compatible dims."""
    whom = f"{step.label} input '{target.name}'" if step else f"output '{target.name}'"
    if source.datatype is not target.datatype:
        raise InvalidConfig(
            f"ensemble '{ensemble}' {whom}: tensor '{tensor}' from the {where} is "
            f"{source.datatype.value}, {whom.split(' ')[-1]} expects {target.datatype.value}",
            field="ensemble_scheduling.step" if step else "output",
        )
    if not _dims_fit(source.dims, target.dims):
        raise InvalidConfig(
            f"ensemble '{ensemble}' {whom}: tensor '{tensor}' from the {where} has dims "
            f"{list(source.dims)}, expected {list(target.dims)}",
            field="ensemble_scheduling.step" if step else "output",
        )


def _dims_fit(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(source) != len(target):
        return False
    return all(s == t or s == -1 or t == -1 for s, t in zip(source, target))


def _check_inputs(
    ensemble: str, step: EnsembleStep, route: Route, inputs: Mapping[str, Any]
) -> None:
    """A variable dim may still carry a shape the step model refuses: say which step."""
    batched = route.config.max_batch_size > 0
    for spec in route.inputs:
        value = inputs.get(spec.name)
        if value is None:
            continue
        shape = np.shape(value)
        if not spec.accepts(shape, batched) or (
            DataType.from_numpy(np.asarray(value).dtype) is not spec.datatype
        ):
            raise InvalidInput(
                f"ensemble '{ensemble}' {step.label}: input '{spec.name}' has shape "
                f"{list(shape)}, the model expects {list(spec.shape(batched))} "
                f"{spec.datatype.value}"
            )


def _named(ensemble: EnsembleScheduler, step: EnsembleStep, exc: HeadraceError) -> HeadraceError:
    """The step's error, of its own kind, with the ensemble and step named first."""
    prefix = f"ensemble '{ensemble.name}' {step.label}: "
    if exc.message.startswith(prefix):
        return exc
    try:
        error = type(exc)(prefix + exc.message)
    except TypeError:  # an error class with another constructor
        error = InvalidInput(prefix + exc.message)
    return error


def _internal(ensemble: EnsembleScheduler, exc: BaseException) -> HeadraceError:
    from headrace.errors import InternalError

    error = InternalError(f"ensemble '{ensemble.name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
