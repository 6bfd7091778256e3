"""Serve Python callables directly, the PyTriton way: ``Server().bind(name, fn, inputs, outputs)``.

``fn(**inputs)`` gets numpy arrays keyed by input name (batch dimension first when
``max_batch_size > 0``) and returns a dict keyed by output name, a sequence in output order,
or one array (see :class:`~headrace.backends.callable.CallableBackend`).

Three ways to use a :class:`Server`:

- in-process: ``server.infer("name", {"x": array})`` runs the core on a background event-loop
  thread, no sockets (tests, notebooks);
- in the background: ``with Server(...) as server:`` opens HTTP, gRPC and metrics on their
  ports (0 picks free ones, read back from ``server.http_port`` …) and stops cleanly on exit;
- in the foreground: ``server.serve()`` blocks until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.config import ModelConfig, add_tensor, new_config
from headrace.errors import InvalidConfig, InvalidInput
from headrace.server.app import FrontendOptions, ServerApp, new_event_loop, run, run_until_signal
from headrace.server.core import InferenceServer, ServerOptions
from headrace.types import DataType, InferenceRequest, RequestedOutput

__all__ = ["DynamicBatching", "Server", "Tensor"]

T = TypeVar("T")
_Group = model_config_pb2.ModelInstanceGroup


@dataclass(frozen=True)
class Tensor:
    """An input or output of a bound callable; ``shape`` excludes the batch dimension."""

    name: str
    dtype: Any = np.float32
    shape: tuple[int, ...] = (-1,)
    optional: bool = False

    def datatype(self) -> DataType:
        """The protocol data type for ``dtype`` (numpy dtype, DataType or a type name)."""
        if isinstance(self.dtype, DataType):
            return self.dtype
        if isinstance(self.dtype, str):
            try:
                return DataType.from_name(self.dtype)
            except ValueError:
                pass  # a numpy name such as "float32"
        try:
            return DataType.from_numpy(np.dtype(self.dtype))
        except (TypeError, ValueError) as exc:
            raise InvalidConfig(
                f"tensor '{self.name}' has unsupported dtype {self.dtype!r}"
            ) from exc


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's ``dynamic_batching`` settings for a bound callable."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_size: int = 0


class Server:
    """Serves bound callables in-process, in the background, or in the foreground."""

    def __init__(
        self,
        frontends: FrontendOptions | None = None,
        *,
        options: ServerOptions | None = None,
    ) -> None:
        self.frontends = frontends or FrontendOptions()
        self.core = InferenceServer(options=options)
        self._app = ServerApp(self.core, self.frontends)
        self._bound: dict[str, tuple[Callable[..., Any], ModelConfig]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core_started = False
        self._doors_open = False
        self._lifecycle = threading.Lock()  # infer() may be called from many threads at once

    # -- binding ----------------------------------------------------------------------------

    def bind(
        self,
        name: str,
        fn: Callable[..., Any],
        inputs: Sequence[Tensor],
        outputs: Sequence[Tensor],
        *,
        max_batch_size: int = 0,
        batching: bool | DynamicBatching | None = True,
        instances: int = 1,
        runtime: str = "in-server",
    ) -> None:
        """Serve ``fn`` as model ``name`` (version 1); binding a name again replaces it.

        ``runtime="process"`` runs each instance in a worker process of its own, so ``fn``'s
        Python code leaves the server's GIL; ``fn`` then travels there pickled (cloudpickle
        for lambdas and closures, which must be installed).
        """
        config = _callable_config(name, inputs, outputs, max_batch_size, batching, instances)
        if runtime not in ("process", "in-server"):
            raise InvalidConfig(
                f"model '{name}': runtime must be 'process' or 'in-server', got {runtime!r}"
            )
        config.parameters["HEADRACE_PYTHON_RUNTIME"].string_value = runtime
        self._bound[name] = (fn, config)
        if self._core_started:
            self._call(self._register(name))

    # -- in-process -------------------------------------------------------------------------

    def infer(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        timeout_s: float | None = 60.0,
    ) -> dict[str, np.ndarray]:
        """Run one request synchronously and return its outputs (starts the core if needed)."""
        self._start_core()
        request = InferenceRequest(
            model_name=name,
            inputs={key: _as_array(key, value) for key, value in inputs.items()},
            model_version=version,
            outputs=None if outputs is None else tuple(RequestedOutput(o) for o in outputs),
        )
        response = self._call(self.core.infer(request), timeout_s)
        return dict(response.outputs)

    # -- serving ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open HTTP, gRPC and metrics in the background; ports are readable afterwards."""
        self._start_core()
        with self._lifecycle:
            if not self._doors_open:
                self._call(self._app.start())
                self._doors_open = True

    def stop(self) -> None:
        """Close the doors, drain in-flight requests, unload, and end the background loop."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                self._call(self._app.stop())
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                self._loop = self._thread = None
                self._core_started = self._doors_open = False

    def serve(self) -> None:
        """Serve in the foreground until SIGTERM/SIGINT, then drain and return."""
        if self._loop is not None:
            raise InvalidConfig("serve() cannot run while the server runs in the background")

        async def main() -> None:
            await self.core.start()
            for name in list(self._bound):
                await self._register(name)
            await run_until_signal(self._app)

        run(main())

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def http_port(self) -> int:
        return self._port("http")

    @property
    def grpc_port(self) -> int:
        return self._port("grpc")

    @property
    def metrics_port(self) -> int:
        return self._port("metrics")

    # -- internals --------------------------------------------------------------------------

    def _port(self, label: str) -> int:
        if label not in self._app.ports:
            raise InvalidConfig(f"the {label} endpoint is not open; start the server first")
        return self._app.ports[label]

    def _start_core(self) -> None:
        if self._core_started:
            return
        with self._lifecycle:
            if self._core_started:
                return
            if self._loop is None:
                loop = new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="headrace-server", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            self._call(self.core.start())
            for name in list(self._bound):
                self._call(self._register(name))
            self._core_started = True

    async def _register(self, name: str) -> None:
        fn, config = self._bound[name]
        await self.core.register_model(name, functools.partial(_callable_backend, fn), config)

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        if self._loop is None:
            raise InvalidConfig("the server's event loop is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout_s)


def _callable_backend(fn: Callable[..., Any], context: Any) -> Any:
    """The backend of a bound callable (a module-level function: a worker process unpickles
    it by name, with ``fn``)."""
    from headrace.backends.callable import CallableBackend

    return CallableBackend(
        fn,
        context.config,
        device=context.device,
        instance_name=context.instance_name,
        version=context.version,
    )


def _callable_config(
    name: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    max_batch_size: int,
    batching: bool | DynamicBatching | None,
    instances: int,
) -> ModelConfig:
    if max_batch_size < 0:
        raise InvalidConfig(f"model '{name}': max_batch_size must be >= 0, got {max_batch_size}")
    if instances < 1:
        raise InvalidConfig(f"model '{name}': instances must be >= 1, got {instances}")
    if not outputs:
        raise InvalidConfig(f"model '{name}' binds no outputs; pass outputs=[Tensor(...)]")
    config = new_config(name, backend="python_callable", max_batch_size=max_batch_size)
    for tensor in inputs:
        add_tensor(
            config, "input", tensor.name, tensor.datatype(), tensor.shape, optional=tensor.optional
        )
    for tensor in outputs:
        add_tensor(config, "output", tensor.name, tensor.datatype(), tensor.shape)
    if max_batch_size > 0 and batching:
        settings = batching if isinstance(batching, DynamicBatching) else DynamicBatching()
        dynamic = config.dynamic_batching
        dynamic.max_queue_delay_microseconds = settings.max_queue_delay_microseconds
        dynamic.preferred_batch_size.extend(settings.preferred_batch_size)
        if settings.max_queue_size:
            dynamic.default_queue_policy.max_queue_size = settings.max_queue_size
    config.instance_group.add(count=instances, kind=_Group.KIND_CPU)
    return config


def _as_array(name: str, value: Any) -> np.ndarray:
    """Numpy arrays as they are; strings become BYTES (object arrays of ``bytes``)."""
    array = np.asarray(value)
    if array.dtype.kind not in ("U", "S", "O"):
        return array
    out = np.empty(array.size, dtype=np.object_)
    for index, item in enumerate(array.reshape(-1)):
        if isinstance(item, str):
            out[index] = item.encode("utf-8")
        elif isinstance(item, bytes | bytearray | memoryview):
            out[index] = bytes(item)
        else:
            raise InvalidInput(
                f"input '{name}' holds a {type(item).__name__}; BYTES inputs take str or bytes"
            )
    return out.reshape(array.shape)
