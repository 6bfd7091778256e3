"""The HTTP door: Triton's KServe v2 REST protocol (frontend, codec, bodies, statuses)."""

from headrace.server.http.frontend import HttpFrontend

__all__ = ["HttpFrontend"]
