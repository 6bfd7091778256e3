"""The access log (``headrace serve --log-requests``): one line per request, off by default.

Each door calls :meth:`AccessLog.record` once a request is answered, with what it knows:
the protocol, the endpoint, the model (``-`` for none), the status it answered (HTTP's code,
gRPC's status name) and how long the answer took. A line reads::

    2026-12-05T07:10:11.123Z http POST /v2/models/simple/infer simple 200 0.412ms

Lines go to the ``headrace.access`` logger at INFO, which does not pass them on to the root
logger: it writes them, as they are, where the server logs (stderr or ``--log-file``),
whatever the log settings say, since asking for ``--log-requests`` is asking for them.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

__all__ = ["AccessLog"]


class AccessLog:
    """Writes one line per answered request to ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._logger = logging.getLogger("headrace.access")
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self._handler = logging.StreamHandler(stream)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(self._handler)

    def record(
        self, protocol: str, endpoint: str, model: str, status: int | str, started: float
    ) -> None:
        """One answered request; ``started`` is its ``time.perf_counter()`` at arrival."""
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        millis = int((now % 1) * 1000)
        self._logger.info(
            "%s.%03dZ %s %s %s %s %.3fms",
            stamp,
            millis,
            protocol,
            endpoint,
            model or "-",
            status,
            elapsed_ms,
        )

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
