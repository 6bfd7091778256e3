"""One ``headrace serve`` child on 127.0.0.1 for ``bench tune``, and what it spends.

The server runs as a subprocess (a door never imports another door), started by
:mod:`headrace.bench.serve_launch`; it is ready once the model's own ``ready`` endpoint says
so. Its spend is read from the outside: CPU seconds of its process tree (psutil) and
the inference count of its statistics endpoint.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from headrace.bench import serve_launch

__all__ = ["TuneServer", "serve"]


@dataclass
class TuneServer:
    """A ready server: its process, ports and log."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and all its children so far."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in tree:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue  # a child that ended between the listing and the look
            total += times.user + times.system
        return total

    def inference_count(self, model: str) -> int:
        """The model's ``inference_count`` (items, batches expanded) from the statistics."""
        url = f"http://{self.http_url}/v2/models/{model}/stats"
        with urllib.request.urlopen(url, timeout=10.0) as response:
            stats = json.loads(response.read())
        return sum(int(entry.get("inference_count", 0)) for entry in stats["model_stats"])

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"<log unreadable: {exc}>"


@contextmanager
def serve(
    repository: Path, model: str, workdir: Path, extra_args: Sequence[str] = ()
) -> Iterator[TuneServer]:
    """Start ``headrace serve REPOSITORY`` on free ports; stop it (SIGTERM, then kill) after."""
    launched = serve_launch.launch(
        repository,
        workdir,
        extra_args,
        ready=serve_launch.http_ok(f"/v2/models/{model}/ready"),
        what=f"report model {model!r} ready",
    )
    try:
        yield TuneServer(launched.process, launched.ports, launched.log_path)
    finally:
        serve_launch.stop(launched.process)
