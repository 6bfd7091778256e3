"""Server-wide settings, shared by the inference core and the model registry."""

from __future__ import annotations

from dataclasses import dataclass

from headrace.errors import InvalidConfig
from headrace.scheduling.backlog import DEFAULT_MAX_STREAM_PENDING, DEFAULT_STREAM_SEND_TIMEOUT_S
from headrace.scheduling.queue_policy import DEFAULT_MAX_QUEUE_SIZE
from headrace.server.memory.registry import DEFAULT_MAX_SHARED_MEMORY_REGIONS

__all__ = ["RayServing", "ServerOptions"]


@dataclass(frozen=True)
class RayServing:
    """Where model instances go when serving on Ray (``--ray-address`` and its flags)."""

    address: str = ""
    """``auto``, ``ray://HOST:PORT``, or "" for a Ray started by this server (``local``)."""
    num_gpus_per_instance: float = 1.0
    """Share of a GPU each GPU instance takes (fractions share one); CPU instances take none."""
    max_restarts: int = -1
    """How often Ray restarts an instance's actor after it dies (-1: always)."""
    namespace: str = ""
    """The Ray namespace of the instances' named actors ("": the frontend's own)."""
    share: bool = False
    """Share the instances with every frontend of ``namespace`` (``--ray-share``): detached
    actors named by model, version, instance and config digest; sequence models batch in them."""
    placement_timeout_s: float = 0.0
    """How long a load waits for its actors to be scheduled and loaded (0: refused at once
    when the cluster lacks the resources); an autoscaler adds nodes for the actors waiting."""

    def __post_init__(self) -> None:
        if not self.num_gpus_per_instance > 0:
            raise InvalidConfig(
                f"--ray-num-gpus-per-instance must be positive, got {self.num_gpus_per_instance}"
            )
        if self.max_restarts < -1:
            raise InvalidConfig(f"--ray-max-restarts must be -1 or more, got {self.max_restarts}")
        if not self.placement_timeout_s >= 0:
            raise InvalidConfig(
                f"--ray-placement-timeout must be 0 or more, got {self.placement_timeout_s}"
            )
        if self.share and not self.namespace:
            raise InvalidConfig(
                "--ray-share needs --ray-namespace: the frontends' shared namespace"
            )


@dataclass(frozen=True)
class ServerOptions:
    """Server-wide settings (the mode and startup models are constructor arguments)."""

    name: str = "triton"
    """The server metadata's name: Triton's, because Triton's clients check it (NVIDIA's
    example programs exit 1 on any other); the version field says headrace's version."""
    repository_poll_secs: float = 15.0
    strict_model_config: bool = True
    """Models need a ``config.pbtxt``; False completes a missing or partial one from the
    model file (``--strict-model-config``; ``headrace serve`` defaults to False, as Triton)."""
    strict_readiness: bool = True
    """Ready only while every model that should be loaded is READY; False: ready once live."""
    exit_on_error: bool = True
    """A model that fails to load at start fails the start (``--exit-on-error``), as Triton."""
    num_buffers: int = 2
    run_now_below_us: float = 500.0
    """Batches of an instance whose average execution time is under this run on the event
    loop thread instead of the pipeline's threads (0: never); see ``scheduling.pool``."""
    python_runtime: str = "in-server"
    """Where python-backend models run unless their config says: ``in-server`` (the server's
    threads) or ``process`` (a worker process per instance). The default by measurement: worker
    processes served 0.54-1.08x the in-server requests (medians; identity, MLP and compute
    models, HTTP and gRPC, c=16/64 on two cores shared with the client), at more server CPU
    per request (``benchmarks/results/serve_ab_python_runtime.json``)."""
    response_cache_bytes: int = 0
    """Size of the server's response cache (``--cache-config local,size=N``); 0: no cache, so
    no model caches even when its config enables ``response_cache``."""
    max_stream_pending_responses: int = DEFAULT_MAX_STREAM_PENDING
    """Responses one stream (gRPC ``ModelStreamInfer``, HTTP ``generate_stream``) may hold for
    a client that is not reading; then the door stops reading its requests and a decoupled
    model's send waits (``--max-stream-pending-responses``)."""
    stream_send_timeout_s: float = DEFAULT_STREAM_SEND_TIMEOUT_S
    """How long such a send waits for room before its request fails (``--stream-send-timeout``)."""
    default_max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    """Requests a model version queues when its config sets no ``max_queue_size`` (dynamic
    batcher: per priority level); 0: unbounded, as Triton (``--default-max-queue-size``)."""
    max_shared_memory_regions: int = DEFAULT_MAX_SHARED_MEMORY_REGIONS
    """Shared memory regions registered at once (``--max-shared-memory-regions``)."""
    ray: RayServing | None = None
    """Place every model's instances as Ray actors (``--ray-address``); None: in this server."""

    def __post_init__(self) -> None:
        if self.repository_poll_secs <= 0:
            raise InvalidConfig(
                f"--repository-poll-secs must be positive, got {self.repository_poll_secs}"
            )
        if self.num_buffers < 1:
            raise InvalidConfig(f"num_buffers must be at least 1, got {self.num_buffers}")
        if self.python_runtime not in ("process", "in-server"):
            raise InvalidConfig(
                f"--python-runtime must be process or in-server, got '{self.python_runtime}'"
            )
        if self.response_cache_bytes < 0:
            raise InvalidConfig(
                f"the --cache-config size must not be negative, got {self.response_cache_bytes}"
            )
        if self.max_stream_pending_responses < 1:
            raise InvalidConfig(
                "--max-stream-pending-responses must be at least 1, got "
                f"{self.max_stream_pending_responses}"
            )
        if not self.stream_send_timeout_s > 0:
            raise InvalidConfig(
                f"--stream-send-timeout must be positive, got {self.stream_send_timeout_s}"
            )
        if self.default_max_queue_size < 0:
            raise InvalidConfig(
                f"--default-max-queue-size must not be negative, got {self.default_max_queue_size}"
            )
        if self.max_shared_memory_regions < 1:
            raise InvalidConfig(
                "--max-shared-memory-regions must be at least 1, got "
                f"{self.max_shared_memory_regions}"
            )
        if self.run_now_below_us < 0:
            raise InvalidConfig(
                f"--run-now-below-us must not be negative, got {self.run_now_below_us}"
            )
