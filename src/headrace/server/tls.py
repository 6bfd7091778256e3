"""TLS for the doors: gRPC with Triton's ``--grpc-use-ssl*`` flags, HTTPS with ``--http-ssl-*``.

Triton serves HTTPS only behind a proxy; headrace's HTTP door takes a certificate and key
itself (both HTTP servers: granian reads the files, aiohttp an ``ssl.SSLContext``). Files are
read when the door opens, so a missing or unreadable one fails the start with its flag named,
not the first client's handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.errors import InvalidConfig

__all__ = ["GrpcTls", "HttpTls"]


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidConfig(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class GrpcTls:
    """Triton's gRPC TLS flags; ``mutual`` also asks clients for a certificate signed by
    ``root_cert``."""

    use_ssl: bool = False
    mutual: bool = False
    server_cert: str = ""
    server_key: str = ""
    root_cert: str = ""

    @property
    def enabled(self) -> bool:
        return self.use_ssl or self.mutual

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if not self.server_cert or not self.server_key:
            raise InvalidConfig("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key")
        if self.mutual and not self.root_cert:
            raise InvalidConfig("--grpc-use-ssl-mutual needs --grpc-root-cert")

    def credentials(self) -> Any:
        """``grpc.ServerCredentials`` for ``add_secure_port``; None when TLS is off."""
        if not self.enabled:
            return None
        import grpc

        key = _read(self.server_key, "--grpc-server-key")
        cert = _read(self.server_cert, "--grpc-server-cert")
        root = _read(self.root_cert, "--grpc-root-cert") if self.root_cert else None
        try:
            return grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=root, require_client_auth=self.mutual
            )
        except (RuntimeError, ValueError) as exc:
            raise InvalidConfig(f"--grpc-server-cert/--grpc-server-key: {exc}") from exc


@dataclass(frozen=True)
class HttpTls:
    """HTTPS on the HTTP door: a PEM certificate (chain) and its private key."""

    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise InvalidConfig("--http-ssl-cert and --http-ssl-key go together; got only one")

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        """Fail now, naming the flag, if the files cannot be read or do not match."""
        self.context()

    def context(self) -> ssl.SSLContext | None:
        """A server context (TLS 1.2 and up) with the certificate loaded; None when off."""
        if not self.enabled:
            return None
        _read(self.cert, "--http-ssl-cert")
        _read(self.key, "--http-ssl-key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise InvalidConfig(
                f"--http-ssl-cert {self.cert} / --http-ssl-key {self.key}: {exc}"
            ) from exc
        return context
