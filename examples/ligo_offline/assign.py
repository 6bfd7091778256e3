"""Which shard of the dataset goes to which (server, sequence): the offline pattern's plan.

``servers`` servers each take ``clients`` clients; client ``c`` (of ``servers * clients``)
talks only to server ``c % servers`` and streams on one correlation id,
``first_sequence_id + c``, so the state its sequence builds (the snapshotter's last seconds
of strain) lives on that server and nowhere else. Shards are dealt round-robin: shard ``i``
goes to client ``i % (servers * clients)``, which streams its shards in increasing order,
each as one sequence (started on its first update, ended on its last), so every shard is
cleaned from a fresh state exactly as a single stream would clean it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Client", "assign"]


@dataclass(frozen=True)
class Client:
    """One client: its server, its correlation id, the shards it streams (in order)."""

    number: int
    server: int
    sequence_id: int
    shards: tuple[int, ...]


def assign(shards: int, servers: int, clients: int, first_sequence_id: int = 1) -> list[Client]:
    """The plan for ``servers`` x ``clients`` clients over ``shards`` shards."""
    if servers < 1 or clients < 1:
        raise ValueError(f"--servers and --clients must be at least 1, got {servers}, {clients}")
    if first_sequence_id < 1:
        raise ValueError(f"sequence ids start at 1 (0 means no sequence), got {first_sequence_id}")
    total = servers * clients
    if shards < total:
        raise ValueError(
            f"--shards {shards} leaves clients idle: at least --servers x --clients = {total}"
        )
    return [
        Client(
            number=c,
            server=c % servers,
            sequence_id=first_sequence_id + c,
            shards=tuple(range(c, shards, total)),
        )
        for c in range(total)
    ]
