"""Triton python-backend models (``REPO/MODEL/VERSION/model.py``), run unchanged.

A ``model.py`` defines ``class TritonPythonModel`` with ``execute(requests)`` and optionally
``initialize(args)``, ``finalize()`` and ``auto_complete_config(config)``; it imports
``triton_python_backend_utils`` (this package's shim). Each backend object imports its own copy
of ``model.py`` under a unique module name, so every model (and every instance) keeps its own
module state, as separate Triton stub processes would.

Each request reaches the model as a ``pb_utils.InferenceRequest`` built from its work item:
``request_id()``, ``correlation_id()``, ``flags()`` (sequence start/end), ``parameters()``,
``requested_output_names()`` and ``get_response_sender()``, whose sender answers through the
work item's response sink. A decoupled model (``model_transaction_policy { decoupled: true
}``) returns None from ``execute`` and sends any number of responses, then the final flag,
from ``execute`` or from threads of its own, as Triton's python backend allows.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.backends import triton_python_backend_utils as pb_utils
from headrace.backends.base import Backend, BackendContext, RequestResult
from headrace.backends.threads import limit_torch_threads
from headrace.config import config_from_json, config_to_json
from headrace.config.platforms import default_model_filename
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    Unsupported,
)
from headrace.types import Outputs, WorkItem

__all__ = ["TritonPythonBackend", "load_model_module"]

_SHIM_NAME = "triton_python_backend_utils"
_SENDER_LOCK = threading.Lock()
"""Guards the closed flag of every response sender (one per request: one shared lock is
cheaper to have than one each, and two threads sending at once are rare)."""
_DEFAULT_FILENAME = default_model_filename("", "python")
_IMPORT_LOCK = threading.Lock()
_PATH_LOCK = threading.Lock()
_PATH_USERS: Counter[str] = Counter()
_PATH_OWNED: set[str] = set()
_MODULE_IDS = itertools.count()
_ERRORS_BY_CODE: dict[int, type[HeadraceError]] = {
    pb_utils.TritonError.INVALID_ARG: InvalidInput,
    pb_utils.TritonError.UNAVAILABLE: Unavailable,
    pb_utils.TritonError.UNSUPPORTED: Unsupported,
}


class TritonPythonBackend(Backend):
    """Runs a Triton ``model.py``: one ``TritonPythonModel`` object per backend object."""

    name = "python"
    handles_request_lists = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        config = context.config
        self.decoupled = bool(config.model_transaction_policy.decoupled)
        self._config_json = json.dumps(config_to_json(config))
        self._output_names = [output.name for output in config.output]
        # Implicit state outputs (sequence_batching.state) go back to the sequence batcher,
        # which feeds them in again with the sequence's next request; the configuration need
        # not declare them as outputs.
        self._state_outputs = frozenset(
            state.output_name for state in config.sequence_batching.state
        )
        self._finalized = False
        path = model_file(config, context.version_dir)
        self._module = load_model_module(path, context.model_name)
        if not context.device.startswith("cuda"):
            limit_torch_threads(config)  # a model.py that imports torch computes with it
        try:
            self._model = _model_class(self._module, path)()
            initialize = getattr(self._model, "initialize", None)
            if initialize is not None:
                with _on_sys_path(context.version_dir):
                    initialize(self._args())
        except HeadraceError:
            self._forget_module()
            raise
        except Exception as exc:
            self._forget_module()
            raise InternalError(
                f"python model '{context.model_name}' failed to initialize ({path}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _args(self) -> dict[str, str]:
        ctx = self.context
        gpu = ctx.device.startswith("cuda")
        return {
            "model_config": self._config_json,
            "model_instance_kind": "GPU" if gpu else "CPU",
            "model_instance_name": ctx.instance_name or f"{ctx.model_name}_0_0",
            "model_instance_device_id": ctx.device.partition(":")[2] or "0",
            "model_repository": ctx.model_dir,
            "model_version": str(ctx.version),
            "model_name": ctx.model_name,
        }

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        """One merged batch is one request to the model."""
        result = self.execute_requests([WorkItem(inputs)])[0]
        if isinstance(result, BaseException):
            raise result
        if result is None:
            raise ModelExecutionError(
                f"python model '{self.context.model_name}' answered through its response "
                "sender; run it through a scheduler to receive its responses"
            )
        return result

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        """Hand the requests to ``TritonPythonModel.execute`` in one call."""
        wrapped = [self._request(item) for item in requests]
        model = self.context.model_name
        try:
            responses = self._model.execute(wrapped)
        except HeadraceError as exc:
            return [exc for _ in requests]
        except Exception as exc:
            return [
                _caused_by(
                    ModelExecutionError(
                        f"python model '{model}' execute raised {type(exc).__name__}: {exc}"
                    ),
                    exc,
                )
                for _ in requests
            ]
        if responses is None and (self.decoupled or all(r.answered for r in wrapped)):
            return [None for _ in requests]  # answered (or answering) through the senders
        if self.decoupled:
            error = ModelExecutionError(
                f"python model '{model}' is decoupled: execute must return None and answer "
                f"through the response senders, it returned {type(responses).__name__}"
            )
            return [error for _ in requests]
        problem = _response_list_problem(responses, len(requests))
        if problem:
            return [ModelExecutionError(f"python model '{model}': {problem}") for _ in requests]
        return [self._outputs(response, item) for response, item in zip(responses, requests)]

    def _request(self, item: WorkItem) -> _ServedRequest:
        tensors = [pb_utils.Tensor(name, value) for name, value in item.inputs.items()]
        flags = (
            pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START if item.sequence_start else 0
        ) | (pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END if item.sequence_end else 0)
        wanted = item.requested_outputs
        return _ServedRequest(
            item,
            self,
            model_name=self.context.model_name,
            requested_output_names=self._output_names if wanted is None else list(wanted),
            inputs=tensors,
            request_id=item.request_id,
            correlation_id=item.sequence_id,
            flags=flags,
            parameters=json.dumps(dict(item.parameters)) if item.parameters else "{}",
            model_version=self.context.version,
            timeout=item.timeout_us,
        )

    def _outputs(self, response: Any, item: WorkItem) -> Outputs | HeadraceError:
        """A response's outputs (those ``item`` asked for), or the error it carries."""
        if response.has_error():
            error = response.error()
            kind = _ERRORS_BY_CODE.get(_error_code(error), ModelExecutionError)
            answered = kind(_error_message(error))
            answered.answered = True
            return answered
        wanted = set(item.requested_outputs or ())
        outputs: Outputs = {}
        for tensor in response.output_tensors():
            name = tensor.name()
            if (
                self._output_names
                and name not in self._output_names
                and name not in self._state_outputs
            ):
                return ModelExecutionError(
                    f"python model '{self.context.model_name}' returned output '{name}', "
                    f"its configuration declares {self._output_names}"
                )
            if not wanted or name in wanted:
                outputs[name] = tensor.as_numpy()
        return outputs

    def unload(self) -> None:
        """Call ``finalize`` once and drop this backend's copy of ``model.py``."""
        if self._finalized:
            return
        self._finalized = True
        try:
            finalize = getattr(self._model, "finalize", None)
            if finalize is not None:
                finalize()
        except Exception as exc:
            raise InternalError(
                f"python model '{self.context.model_name}' finalize raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._forget_module()

    def _forget_module(self) -> None:
        sys.modules.pop(self._module.__name__, None)

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Let ``TritonPythonModel.auto_complete_config`` complete ``config``, in place."""
        path = model_file(config, version_dir)
        module = load_model_module(path, config.name)
        try:
            hook = getattr(_model_class(module, path), "auto_complete_config", None)
            if hook is None:
                return
            wrapper = pb_utils.ModelConfig(config_to_json(config))
            try:
                result = hook(wrapper)
            except HeadraceError:
                raise
            except Exception as exc:
                message = (
                    str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                )
                raise InvalidConfig(
                    message, source=str(path), field="auto_complete_config"
                ) from exc
            completed = result if isinstance(result, pb_utils.ModelConfig) else wrapper
            config.CopyFrom(config_from_json(completed.as_dict(), source=str(path)))
        finally:
            sys.modules.pop(module.__name__, None)


def model_file(config: model_config_pb2.ModelConfig, version_dir: str) -> Path:
    """The model's Python file: ``default_model_filename`` or ``model.py`` in the version dir."""
    path = Path(version_dir) / (config.default_model_filename or _DEFAULT_FILENAME)
    if not path.is_file():
        raise InvalidConfig(
            f"python model '{config.name}' has no file {path}", source=str(path.parent)
        )
    return path


def load_model_module(path: Path, model_name: str) -> ModuleType:
    """Import ``path`` under a module name no other model shares, with the pb_utils shim."""
    sys.modules.setdefault(_SHIM_NAME, pb_utils)
    safe = "".join(c if c.isalnum() else "_" for c in model_name)
    with _IMPORT_LOCK:
        name = f"headrace_python_model_{safe}_{next(_MODULE_IDS)}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise InvalidConfig(f"cannot import {path} as a python model", source=str(path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        before = set(sys.modules)
        try:
            with _on_sys_path(str(path.parent)):
                spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise InvalidConfig(
                f"importing python model '{model_name}' failed: {type(exc).__name__}: {exc}",
                source=str(path),
            ) from exc
        finally:
            _forget_local_modules(set(sys.modules) - before, path.parent)
    return module


def _forget_local_modules(names: set[str], directory: Path) -> None:
    """Unregister helper modules imported from the model's own directory.

    The model keeps its references; a second model with its own ``helper.py`` then imports
    its own file instead of finding the first model's module in ``sys.modules``.
    """
    for name in names:
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and Path(origin).resolve().is_relative_to(directory.resolve()):
            sys.modules.pop(name, None)


@contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    """Let ``model.py`` import helper modules that sit next to it, as Triton's stub does.

    Counted per directory, so instances of one model loading on several threads do not take
    the directory away from each other; a directory already on ``sys.path`` is left there.
    """
    with _PATH_LOCK:
        if _PATH_USERS[directory] == 0 and directory not in sys.path:
            sys.path.insert(0, directory)
            _PATH_OWNED.add(directory)
        _PATH_USERS[directory] += 1
    try:
        yield
    finally:
        with _PATH_LOCK:
            _PATH_USERS[directory] -= 1
            if _PATH_USERS[directory] == 0:
                del _PATH_USERS[directory]
                if directory in _PATH_OWNED:
                    _PATH_OWNED.discard(directory)
                    try:
                        sys.path.remove(directory)
                    except ValueError:
                        pass


def _model_class(module: ModuleType, path: Path) -> type:
    cls = getattr(module, "TritonPythonModel", None)
    if not isinstance(cls, type):
        raise InvalidConfig("defines no class TritonPythonModel", source=str(path))
    if not callable(getattr(cls, "execute", None)):
        raise InvalidConfig("TritonPythonModel has no execute method", source=str(path))
    return cls


def _response_list_problem(responses: Any, expected: int) -> str:
    if not isinstance(responses, list | tuple):
        return f"execute must return a list of InferenceResponse, got {type(responses).__name__}"
    if len(responses) != expected:
        return f"execute returned {len(responses)} responses for {expected} requests"
    for index, response in enumerate(responses):
        if not all(hasattr(response, m) for m in ("has_error", "output_tensors", "error")):
            return f"execute returned {type(response).__name__} for request {index}, not an InferenceResponse"
    return ""


def _error_code(error: Any) -> int:
    code = getattr(error, "code", None)
    return int(code()) if callable(code) else pb_utils.TritonError.INTERNAL


def _error_message(error: Any) -> str:
    message = getattr(error, "message", None)
    return str(message()) if callable(message) else str(error)


def _caused_by(error: HeadraceError, cause: BaseException) -> HeadraceError:
    error.__cause__ = cause
    return error


class _ServedRequest(pb_utils.InferenceRequest):
    """A request the server handed the model: its sender answers the work item's sink.

    The sender is made on first use; most models never ask for one.
    """

    def __init__(self, item: WorkItem, backend: TritonPythonBackend, **fields: Any) -> None:
        super().__init__(**fields)
        self._item = item
        self._backend = backend

    @property
    def answered(self) -> bool:
        """Whether the model sent anything through this request's sender."""
        sender = self._response_sender
        return sender is not None and sender.used

    def get_response_sender(self) -> _ResponseSender:
        if self._response_sender is None:
            self._response_sender = _ResponseSender(self._item, self._backend)
        return self._response_sender  # type: ignore[no-any-return]

    def is_cancelled(self) -> bool:
        return self._item.sink.done and not self.answered


class _ResponseSender:
    """``request.get_response_sender()``: answers one request through its work item's sink.

    ``send(response, flags)`` may be called from any thread, any number of times; the
    ``TRITONSERVER_RESPONSE_COMPLETE_FINAL`` flag (with or without a response) ends it. A
    response that carries an error reaches the client as an error response; it ends the
    request only with the final flag, as in Triton.
    """

    __slots__ = ("_backend", "_closed", "_item", "used")

    def __init__(self, item: WorkItem, backend: TritonPythonBackend) -> None:
        self._item = item
        self._backend = backend
        self._closed = False
        self.used = False

    def send(self, response: Any = None, flags: int = 0) -> None:
        final = bool(flags & pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        with _SENDER_LOCK:
            if self._closed:
                raise pb_utils.TritonModelException(
                    "Unable to send response. Response sender has been closed."
                )
            if response is None and not final:
                raise pb_utils.TritonModelException(
                    "Inference Response object must be provided when the response flags is "
                    "not COMPLETE_FINAL"
                )
            self.used = True
            self._closed = final
        sink = self._item.sink
        if response is None:
            self._send(None, final=True)
            return
        if not all(hasattr(response, m) for m in ("has_error", "output_tensors", "error")):
            raise pb_utils.TritonModelException(
                f"response sender takes an InferenceResponse, got {type(response).__name__}"
            )
        result = self._backend._outputs(response, self._item)
        if isinstance(result, BaseException):
            sink.fail(result, final=final)
            return
        self._send(result, final=final, parameters=_response_parameters(response))

    def _send(self, outputs: Any, **options: Any) -> None:
        """Send through the sink, which may wait for a client that is not reading; when it
        gives up (the request is failed) the model hears it as Triton's models do."""
        try:
            self._item.sink.send(outputs, **options)
        except Unavailable as exc:
            with _SENDER_LOCK:
                self._closed = True
            raise pb_utils.TritonModelException(f"Unable to send response: {exc.message}") from exc

    def is_cancelled(self) -> bool:
        """Whether the client went away (its stream closed or its call was cancelled)."""
        return self._item.sink.done and not self._closed


def _response_parameters(response: Any) -> dict[str, Any] | None:
    text = response.parameters() if callable(getattr(response, "parameters", None)) else ""
    if not text or text == "{}":
        return None
    value = json.loads(text) if isinstance(text, str) else dict(text)
    return value if isinstance(value, dict) and value else None
