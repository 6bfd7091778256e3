"""A scheduler in front of a model's scheduler that answers repeated requests from the cache.

:class:`CachingScheduler` is what a model version with ``response_cache { enable: true }``
schedules through when the server has a cache. ``submit`` keys the request
(:func:`~headrace.scheduling.response_cache.request_key`) and looks it up: a hit answers the
sink at once, before ``submit`` returns, and neither the model's scheduler nor its instances
see the request; a miss goes to the model's scheduler with its sink wrapped, so the response
is stored on its way back (a failed request stores nothing). Requests from every door and
from ensemble steps pass here alike, as they do through Triton's scheduler-level cache.

Statistics follow Triton: a hit counts as a successful request with ``cache_hit`` (count and
lookup time) and no execution or inference; a miss that succeeds adds ``cache_miss`` (lookup
plus insertion time), which also lengthens the request's ``success`` time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any, Protocol

from headrace.scheduling.base import Scheduler
from headrace.scheduling.response_cache import ResponseCache, request_key
from headrace.types import Outputs, ResponseSink, WorkItem

__all__ = ["CacheStatsSink", "CachingScheduler"]


class CacheStatsSink(Protocol):
    """Receives the cache's per-request timings (nanoseconds, monotonic)."""

    def record_cache_hit(self, *, hit_ns: int, total_ns: int) -> None: ...

    def record_cache_miss(self, *, miss_ns: int) -> None: ...


_GENERATIONS = itertools.count(1)
"""One number per CachingScheduler built: each load of a version keys its own entries."""

_HIT = object()
"""The ticket of a request answered from the cache: nothing to withdraw."""


class CachingScheduler(Scheduler):
    """Looks requests up in ``cache`` before handing them to ``inner``."""

    def __init__(
        self,
        inner: Scheduler,
        cache: ResponseCache,
        stats: CacheStatsSink,
        *,
        name: str,
        version: int,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self._stats = stats
        self.name = name
        self.version = version
        self.generation = next(_GENERATIONS)

    def submit(self, item: WorkItem) -> Any:
        start_ns = time.monotonic_ns()
        key = request_key(self.name, self.version, item, self.generation)
        if key is None:  # an input on a device: not hashable, not cached (as Triton)
            return self.inner.submit(item)
        found = self.cache.lookup(key)
        if found is None:
            lookup_ns = time.monotonic_ns() - start_ns
            item.sink = _StoringSink(item.sink, self, key, lookup_ns)
            return self.inner.submit(item)
        elapsed_ns = time.monotonic_ns() - start_ns
        self._stats.record_cache_hit(hit_ns=elapsed_ns, total_ns=elapsed_ns)
        item.sink.send(dict(found.outputs), final=True, parameters=found.parameters or None)
        return _HIT

    def withdraw(self, ticket: Any) -> None:
        if ticket is not _HIT:
            self.inner.withdraw(ticket)

    async def drain(self) -> None:
        await self.inner.drain()

    @property
    def pending(self) -> int:
        return self.inner.pending

    def _store(
        self, key: bytes, outputs: Outputs, parameters: Mapping[str, Any] | None, lookup_ns: int
    ) -> None:
        start_ns = time.monotonic_ns()
        self.cache.insert(key, outputs, parameters)
        self._stats.record_cache_miss(miss_ns=lookup_ns + time.monotonic_ns() - start_ns)


class _StoringSink:
    """Stores a missed request's response in the cache, then passes it on (any thread)."""

    __slots__ = ("_key", "_lookup_ns", "_owner", "_sink")

    def __init__(
        self, sink: ResponseSink, owner: CachingScheduler, key: bytes, lookup_ns: int
    ) -> None:
        self._sink = sink
        self._owner = owner
        self._key = key
        self._lookup_ns = lookup_ns

    @property
    def done(self) -> bool:
        return self._sink.done

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if outputs is not None and final:
            self._owner._store(self._key, outputs, parameters, self._lookup_ns)
        self._sink.send(outputs, final=final, parameters=parameters)

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self._sink.fail(error, final=final)
