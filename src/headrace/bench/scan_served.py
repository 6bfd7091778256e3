"""One ``tritonclient`` client opened for a served scan: the model's tensors and ``infer``.

Any KServe v2 server works: the tensors come from the model's metadata, the batch dimension
from its configuration (``max_batch_size``). HTTP requests and responses use the binary
tensor extension, as ``perf_analyzer`` does by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.bench.scan import InputSpec, Target
from headrace.errors import InvalidInput, Unavailable, require
from headrace.types import DataType

__all__ = ["PROTOCOLS", "ServedModel", "open_client", "served_target"]

PROTOCOLS = ("http", "grpc")


@contextmanager
def served_target(url: str, protocol: str, model: str, *, version: str = "") -> Iterator[Target]:
    """A scan target: ``model`` on the server at ``url`` (``host:port``) over ``protocol``."""
    with open_client(url, protocol, model, version) as client:
        yield Target(
            protocol,
            model,
            client.inputs,
            client.max_batch_size,
            client.infer,
            client.prepare,
            server=client.server,
        )


@dataclass
class ServedModel:
    """A client bound to one model: ``prepare`` builds a request's tensors, ``infer`` sends it."""

    client: Any
    module: Any
    model: str
    version: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    max_batch_size: int
    server: dict[str, Any] = field(default_factory=dict)

    def prepare(self, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        tensors = []
        for spec in self.inputs:
            array = arrays[spec.name]
            tensor = self.module.InferInput(spec.name, list(array.shape), spec.datatype.value)
            if self.module.__name__.endswith("http"):
                tensor.set_data_from_numpy(array, binary_data=True)
            else:
                tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    def infer(self, tensors: list[Any]) -> object:
        if self.module.__name__.endswith("http"):
            requested = [
                self.module.InferRequestedOutput(n, binary_data=True) for n in self.outputs
            ]
        else:
            requested = [self.module.InferRequestedOutput(n) for n in self.outputs]
        return self.client.infer(self.model, tensors, model_version=self.version, outputs=requested)


@contextmanager
def open_client(url: str, protocol: str, model: str, version: str = "") -> Iterator[ServedModel]:
    """A client of ``model`` at ``url`` (``host:port``) over ``protocol``."""
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    module = require(f"tritonclient.{protocol}", "serve")
    client = module.InferenceServerClient(url)
    try:
        yield _describe(client, module, protocol, url, model, version)
    finally:
        client.close()


def _describe(
    client: Any, module: Any, protocol: str, url: str, model: str, version: str
) -> ServedModel:
    as_json = {"as_json": True} if protocol == "grpc" else {}
    try:
        server = client.get_server_metadata(**as_json)
        metadata = client.get_model_metadata(model, version, **as_json)
        config = client.get_model_config(model, version, **as_json)
    except Exception as exc:  # tritonclient's InferenceServerException, or a refused socket
        raise Unavailable(
            f"{protocol} server at {url!r} did not describe model {model!r}: {exc}"
        ) from exc
    config = config.get("config", config)  # gRPC wraps the configuration
    max_batch_size = int(config.get("max_batch_size", 0))
    inputs = []
    for tensor in metadata.get("inputs", []):
        shape = [int(dim) for dim in tensor.get("shape", [])]
        dims = shape[1:] if max_batch_size > 0 else shape
        inputs.append(InputSpec(tensor["name"], DataType(tensor["datatype"]), tuple(dims)))
    return ServedModel(
        client=client,
        module=module,
        model=model,
        version=version,
        inputs=tuple(inputs),
        outputs=tuple(tensor["name"] for tensor in metadata.get("outputs", [])),
        max_batch_size=max_batch_size,
        server={
            "url": url,
            "protocol": protocol,
            "name": server.get("name", ""),
            "version": server.get("version", ""),
        },
    )
