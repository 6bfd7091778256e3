"""How many compute threads one CPU instance gets.

torch and onnxruntime default to every core per instance. With several instances (and, in a
server, an event loop) on the same cores, that oversubscribes them: on 2 shared cores an MLP
forward at batch 2 took 730 us with 2 torch threads and 141 us with 1. Each CPU instance
therefore gets the usable cores divided by the model's CPU instance count, unless the
configuration says otherwise.
"""

from __future__ import annotations

import os
import sys

from tritonclient.grpc import model_config_pb2

__all__ = [
    "cpu_instance_count",
    "limit_torch_threads",
    "threads_per_cpu_instance",
    "usable_cpus",
]


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_instance_count(config: model_config_pb2.ModelConfig) -> int:
    """CPU instances the configuration asks for (one when it names no instance group)."""
    cpu = model_config_pb2.ModelInstanceGroup.KIND_CPU
    counts = [max(1, group.count) for group in config.instance_group if group.kind == cpu]
    return max(1, sum(counts))


def threads_per_cpu_instance(config: model_config_pb2.ModelConfig) -> int:
    """Usable cores shared evenly among the model's CPU instances, at least one each."""
    return max(1, usable_cpus() // cpu_instance_count(config))


def limit_torch_threads(config: model_config_pb2.ModelConfig) -> None:
    """Lower torch's intra-op threads to this model's share, if torch is loaded.

    torch's thread pool is per process, so it is only ever lowered: N instances together use
    the cores once. Backends that run user code (Python models, bound functions) call it too,
    since that code uses torch with every core by default; torch's idle threads then spin on
    the cores the server's event loop needs (on 2 cores, an MLP python model served 1.3k
    gRPC infer/s with 2 torch threads and 1.9k with 1). Not loaded: nothing to do.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    threads = threads_per_cpu_instance(config)
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
