"""The KServe v2 / Triton HTTP routes, once for every HTTP server, and a small matcher.

:data:`ROUTES` lists ``(method, pattern, handler name)`` in aiohttp's pattern syntax
(``{name}`` one path segment, ``{name:regex}``), infer, the hot path, first. aiohttp's router
takes the table as it is; :class:`Router` matches it for servers without a router (granian)
the way aiohttp does: the first route whose pattern and method match wins; a path that only
matches under another method is 405 ``Method Not Allowed``, anything else 404 ``Not Found``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUTES", "Route", "RouteError", "Router"]

_MODEL_BASES = ("/v2/models/{model}", "/v2/models/{model}/versions/{version:[0-9]+}")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: str


def _table() -> tuple[Route, ...]:
    routes: list[Route] = []
    for base in _MODEL_BASES:
        routes.append(Route("POST", base + "/infer", "infer"))
        routes.append(Route("POST", base + "/generate", "generate"))
        routes.append(Route("POST", base + "/generate_stream", "generate_stream"))
    routes += [
        Route("GET", "/v2", "server_metadata"),
        Route("GET", "/v2/health/live", "live"),
        Route("GET", "/v2/health/ready", "ready"),
        Route("GET", "/v2/models/stats", "statistics"),
        Route("POST", "/v2/repository/index", "repository_index"),
        Route("POST", "/v2/repository/models/{model}/load", "load"),
        Route("POST", "/v2/repository/models/{model}/unload", "unload"),
        Route("GET", "/v2/logging", "log_settings"),
        Route("POST", "/v2/logging", "update_log_settings"),
        Route("GET", "/v2/trace/setting", "trace_settings"),
        Route("POST", "/v2/trace/setting", "update_trace_settings"),
        Route("GET", "/v2/models/{model}/trace/setting", "trace_settings"),
        Route("POST", "/v2/models/{model}/trace/setting", "update_trace_settings"),
    ]
    for kind in ("system", "cuda"):
        base = f"/v2/{kind}sharedmemory"
        routes += [
            Route("GET", base + "/status", "shm_status"),
            Route("GET", base + "/region/{region}/status", "shm_status"),
            Route("POST", base + "/region/{region}/register", "shm_register"),
            Route("POST", base + "/region/{region}/unregister", "shm_unregister"),
            Route("POST", base + "/unregister", "shm_unregister"),
        ]
    for base in _MODEL_BASES:
        routes += [
            Route("GET", base, "model_metadata"),
            Route("GET", base + "/ready", "model_ready"),
            Route("GET", base + "/config", "model_config"),
            Route("GET", base + "/stats", "statistics"),
        ]
    return tuple(routes)


ROUTES: tuple[Route, ...] = _table()

_PARAM = re.compile(r"\{(\w+)(?::([^{}]+))?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    out, last = [], 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[last : match.start()]))
        out.append(f"(?P<{match.group(1)}>{match.group(2) or '[^{}/]+'})")
        last = match.end()
    out.append(re.escape(pattern[last:]))
    return re.compile("".join(out))


class RouteError(Exception):
    """No route: ``status`` 404 or 405 with aiohttp's reason as the message."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Router:
    """Matches a method and a (decoded) path to ``handlers``' bound method and its parameters."""

    def __init__(self, handlers: Any, routes: tuple[Route, ...] = ROUTES) -> None:
        self._static: dict[str, dict[str, Callable[..., Any]]] = {}
        self._dynamic: list[tuple[re.Pattern[str], str, Callable[..., Any]]] = []
        for route in routes:
            handler = getattr(handlers, route.handler)
            if "{" in route.pattern:
                self._dynamic.append((_compile(route.pattern), route.method, handler))
            else:
                self._static.setdefault(route.pattern, {})[route.method] = handler

    def match(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, str]]:
        """The handler and path parameters; raises :class:`RouteError` when there is none."""
        wrong_method = False
        static = self._static.get(path)
        if static is not None:
            handler = static.get(method)
            if handler is not None:
                return handler, {}
            wrong_method = True
        for regex, route_method, handler in self._dynamic:
            found = regex.fullmatch(path)
            if found is not None:
                if route_method == method:
                    return handler, found.groupdict()
                wrong_method = True
        if wrong_method:
            raise RouteError(405, "Method Not Allowed")
        raise RouteError(404, "Not Found")
