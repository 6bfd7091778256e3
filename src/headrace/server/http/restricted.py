"""Which API group an HTTP path belongs to, and Triton's 403 for a request without its key.

The group follows the path alone, whatever the method, as Triton 2.51 decides it (a ``PUT`` to
``…/infer`` is refused as ``inference`` before it is found to be the wrong method); a path of
no group (``/metrics``, an unknown one) is never refused here and answers 404 as before.
"""

from __future__ import annotations

import json
import re

from headrace.server.http.handlers import Headers, HttpResponse
from headrace.server.security import RestrictedApis

__all__ = ["api_group", "refusal"]

_MODEL = r"/v2/models/[^/]+(?:/versions/[^/]+)?"
_GROUPS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), group)
    for pattern, group in (
        (r"/v2/?", "metadata"),
        (r"/v2/health/.*", "health"),
        (r"/v2/models/stats", "statistics"),
        (_MODEL + r"/stats", "statistics"),
        (_MODEL + r"/ready", "health"),
        (_MODEL + r"/config", "model-config"),
        (_MODEL + r"/(?:infer|generate|generate_stream)", "inference"),
        (_MODEL + r"/trace/.*", "trace"),
        (_MODEL, "metadata"),
        (r"/v2/repository(?:/.*)?", "model-repository"),
        (r"/v2/(?:system|cuda)sharedmemory(?:/.*)?", "shared-memory"),
        (r"/v2/trace(?:/.*)?", "trace"),
        (r"/v2/logging", "logging"),
    )
)


def api_group(path: str) -> str | None:
    """The group of ``path`` (Triton's names), or None for a path outside every group."""
    for pattern, group in _GROUPS:
        if pattern.fullmatch(path):
            return group
    return None


def refusal(restricted: RestrictedApis, path: str, headers: Headers) -> HttpResponse | None:
    """Triton's 403 when ``path``'s group is restricted and ``headers`` lack its key, else None.

    Triton sends this one error as ``text/plain`` (its other errors are JSON); so does this.
    """
    missing = restricted.refused(api_group(path), headers.get)
    if missing is None:
        return None
    message = f"This API is restricted, expecting header '{missing}'"
    body = json.dumps({"error": message}, separators=(",", ":"))
    return HttpResponse(403, body.encode("utf-8"), "text/plain")
