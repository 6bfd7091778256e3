"""Bounded in-flight execution: keep at most ``depth`` futures outstanding.

    items ──► submit(item) ──► [oldest … newest]  (at most ``depth``)  ──► on_done(item, result)

The loop that keeps a model instance (or several, round-robin) fed without an unbounded queue:
submit while there is room, otherwise wait on the oldest. The offline runner, the benchmarks
and Ray actors all drive their instances with it.

Promises:
- At most ``depth`` futures returned by ``submit`` are pending at once. Items are pulled from
  ``items`` one at a time, only after the previous one was submitted, so a bounded producer
  behind the iterable is throttled, never drained ahead.
- Results are taken in submission order: ``on_done(item, result)`` runs on the calling
  thread, once per item, in the order the items came (a model instance completes its futures
  in that order anyway; across several instances the oldest is waited on first).
- The first error (raised by the iterable, ``submit``, a future or ``on_done``) stops
  submission and ``on_done``. The driver still waits for every future already in flight
  (their results and errors are dropped), then raises that first error: nothing it started
  is left running when it returns or raises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from typing import TypeVar

from headrace.errors import InvalidInput

__all__ = ["drive_in_flight"]

T = TypeVar("T")
R = TypeVar("R")


def drive_in_flight(
    items: Iterable[T],
    submit: Callable[[T], Future[R]],
    depth: int,
    on_done: Callable[[T, R], None] | None = None,
) -> int:
    """Submit every item with at most ``depth`` in flight; returns how many completed.

    ``on_done(item, result)`` is called in item order as each result is taken; errors are
    raised after what is in flight has finished (see the module docstring).
    """
    if depth < 1:
        raise InvalidInput(f"in-flight depth must be at least 1, got {depth}")
    in_flight: deque[tuple[T, Future[R]]] = deque()
    completed = 0

    def finish_oldest() -> None:
        nonlocal completed
        item, future = in_flight.popleft()
        result = future.result()
        if on_done is not None:
            on_done(item, result)
        completed += 1

    try:
        for item in items:
            while in_flight and (len(in_flight) >= depth or in_flight[0][1].done()):
                finish_oldest()
            in_flight.append((item, submit(item)))
        while in_flight:
            finish_oldest()
    except BaseException:
        wait([future for _, future in in_flight])
        raise
    return completed
