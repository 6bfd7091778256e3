"""``headrace serve --ray-address …``: the flags that place model instances as Ray actors.

Off by default: instances run in the server's process (or its python worker processes). With
``--ray-address`` every non-decoupled model's instances become Ray actors, one per instance,
spread over the cluster's nodes, and the server is one stateless frontend in front of them.
"""

from __future__ import annotations

import argparse
from typing import Any

from headrace.server.options import RayServing

__all__ = ["add_ray_arguments", "connect", "ray_serving"]

_LOCAL = "local"


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Ray flags to ``headrace serve``."""
    group = parser.add_argument_group("model instances as Ray actors")
    group.add_argument(
        "--ray-address",
        default="",
        metavar="auto|ray://HOST:PORT|local",
        help="place every model's instances as Ray actors on this cluster: auto (the cluster "
        "this machine belongs to), ray://HOST:PORT (a Ray client address), or local (start a "
        "Ray here); decoupled models stay in the server (default: off, instances run in the "
        "server)",
    )
    group.add_argument(
        "--ray-num-gpus-per-instance",
        type=float,
        default=RayServing.num_gpus_per_instance,
        metavar="GPUS",
        help="with --ray-address: the share of a GPU each GPU instance (KIND_GPU, or KIND_AUTO "
        "on a cluster with GPUs) takes; fractions put several on one GPU; CPU instances take "
        "no GPU and one CPU (default %(default)g)",
    )
    group.add_argument(
        "--ray-max-restarts",
        type=int,
        default=RayServing.max_restarts,
        metavar="N",
        help="with --ray-address: how often Ray restarts an instance's actor that died; its "
        "batches in flight fail with UNAVAILABLE and are never rerun (default %(default)s: "
        "always)",
    )
    group.add_argument(
        "--ray-namespace",
        default="",
        metavar="NAME",
        help="with --ray-address: the Ray namespace of the instances' named actors "
        "(MODEL/VERSION/INSTANCE#ID), so tools can find them (default: the server's own)",
    )
    _add_share(group)
    _add_placement_timeout(group)


def _add_share(group: Any) -> None:
    group.add_argument(
        "--ray-share",
        action="store_true",
        help="with --ray-namespace: serve through the same actors as every other frontend of "
        "the namespace (found, or made detached, one per model, version, instance and config); "
        "a sequence's requests reach the instance holding its state whichever frontend they "
        "enter; closing a frontend leaves the actors to the others (default off)",
    )


def _add_placement_timeout(group: Any) -> None:
    group.add_argument(
        "--ray-placement-timeout",
        type=float,
        default=RayServing.placement_timeout_s,
        metavar="SECONDS",
        help="with --ray-address: how long a model's load waits for its actors to be "
        "scheduled and loaded before it fails naming the resources missing; the model is not "
        "ready meanwhile; 0 refuses the load at once when the cluster lacks the resources. "
        "On an autoscaled cluster (KubeRay) set it above a new node's start plus the model's "
        "load, e.g. 600, since the autoscaler adds nodes only for actors that wait "
        "(default %(default)g)",
    )


def ray_serving(args: argparse.Namespace) -> RayServing | None:
    """The Ray settings the flags ask for; None without --ray-address."""
    if not args.ray_address:
        return None
    return RayServing(
        address="" if args.ray_address == _LOCAL else args.ray_address,
        num_gpus_per_instance=args.ray_num_gpus_per_instance,
        max_restarts=args.ray_max_restarts,
        namespace=args.ray_namespace,
        share=args.ray_share,
        placement_timeout_s=args.ray_placement_timeout,
    )


def connect(serving: RayServing) -> Any:
    """Join (or start) the cluster now, on the main thread, before any model loads."""
    from headrace.engine.ray_workers import connect_ray

    return connect_ray(serving.address)
