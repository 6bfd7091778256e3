"""``headrace ray-actors``: list, and remove, the model instance actors of a Ray namespace.

Shared actors (``headrace serve --ray-share``) are detached: they outlive the frontends, and a
config change makes new ones (named by the config's digest) beside the old. This lists every
instance actor of the namespace (model, version, instance, config digest, node, state, and how
many running frontends use it); ``--remove-stale`` removes the shared ones no running frontend
uses, ``--remove MODEL[@DIGEST]`` those of one model (one config), unless a frontend still
uses them. An actor owned by one frontend (without ``--ray-share``) ends with it and is only
listed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``ray-actors`` subcommand to the headrace CLI."""
    parser = subparsers.add_parser(
        "ray-actors",
        help="list or remove the model instance actors of a Ray namespace (serve --ray-share)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ray-address",
        default="auto",
        metavar="auto|ray://HOST:PORT",
        help="the cluster: auto (the one this machine belongs to) or a Ray client address "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--ray-namespace",
        required=True,
        metavar="NAME",
        help="the namespace the frontends serve in, as their --ray-namespace (no default)",
    )
    remove = parser.add_mutually_exclusive_group()
    remove.add_argument(
        "--remove-stale",
        action="store_true",
        help="remove the shared actors no running frontend uses, e.g. those of an old config "
        "(default off: only list)",
    )
    remove.add_argument(
        "--remove",
        metavar="MODEL[@DIGEST]",
        help="remove the shared actors of MODEL (of its config DIGEST only, as the CONFIG "
        "column shows it) that no running frontend uses (default: none)",
    )
    parser.set_defaults(func=ray_actors)


def ray_actors(args: argparse.Namespace) -> int:
    """List the namespace's actors, removing those asked for; 1 if one asked for is in use."""
    from headrace.engine.ray_frontends import list_actors
    from headrace.engine.ray_workers import connect_ray

    ray = connect_ray(args.ray_address)
    entries = list_actors(ray, args.ray_namespace)
    chosen = [e for e in entries if e.shared and _chosen(e, args)]
    _print_table(entries)
    if not (args.remove_stale or args.remove):
        return 0
    status = 0
    for entry in chosen:
        if not entry.stale:
            print(
                f"kept {entry.name}: {entry.users} running frontend(s) serve through it "
                "(unload the model there first)",
                file=sys.stderr,
            )
            status = 1
            continue
        ray.kill(ray.get_actor(entry.name, namespace=args.ray_namespace), no_restart=True)
        print(f"removed {entry.name}")
    if args.remove and not chosen:
        print(f"no shared actor of {args.remove} in namespace {args.ray_namespace}")
    return status


def _chosen(entry: Any, args: argparse.Namespace) -> bool:
    if args.remove_stale:
        return bool(entry.stale)
    if not args.remove:
        return False
    model, _, digest = str(args.remove).partition("@")
    return bool(entry.model == model and digest in ("", entry.config))


def _print_table(entries: list[Any]) -> None:
    header = ("MODEL", "VERSION", "INSTANCE", "CONFIG", "NODE", "STATE", "FRONTENDS")
    rows = [
        (
            e.model,
            e.version,
            e.instance,
            e.config or "(owned)",
            e.node[:12],
            e.state,
            str(e.users) if e.shared else "-",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
