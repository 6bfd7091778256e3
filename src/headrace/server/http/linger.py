"""Reading and dropping the unread rest of a request body before answering (a lingering
close).

A server that answers early (a body over ``--max-body-bytes``, an unknown route) and closes
without reading what the client is still sending makes the client's kernel see a reset: the
client gets a broken pipe instead of the answer. Draining the rest first lets the client
finish sending and read the answer. It is bounded in bytes and in time, and each chunk is
dropped as it comes, so memory stays bounded; past either bound the connection closes as
before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

__all__ = ["LINGER_BYTES", "LINGER_IDLE_S", "LINGER_S", "drain"]

LINGER_BYTES = 256 << 20
"""At most this many unread body bytes are read and dropped before answering."""

LINGER_S = 10.0
"""At most this long is spent reading and dropping them (aiohttp's own lingering time)."""

LINGER_IDLE_S = 1.0
"""A client silent this long has stopped sending (or stalls on purpose): answer it now."""


async def drain(
    chunks: AsyncIterator[bytes],
    max_bytes: int = LINGER_BYTES,
    seconds: float = LINGER_S,
    idle_s: float = LINGER_IDLE_S,
) -> bool:
    """Read ``chunks`` to their end, dropping each; True when the end came within
    ``max_bytes`` and ``seconds``, False when a bound stopped it, the client went silent
    for ``idle_s`` or reading failed (the client left). ``chunks`` is an iterator already (granian's body iterates once)."""
    deadline = time.monotonic() + seconds
    seen = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), min(left, idle_s))
        except StopAsyncIteration:
            return True
        except Exception:  # any failure to read (the client left) ends the lingering
            return False
        seen += len(chunk)
        if seen > max_bytes:
            return False
