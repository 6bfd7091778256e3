"""Soak proof: ``headrace serve`` under mixed traffic for minutes, with model reloads.

    python benchmarks/reliability/soak.py                    # 10 minutes (the recorded run)
    python benchmarks/reliability/soak.py --minutes 2 --out /tmp/soak.json   # a quick look

The server: ``headrace serve`` on 127.0.0.1 (free ports) over the examples repository
(``headrace examples create``) in explicit model control mode with every model loaded. The
traffic, each client paced at a fixed rate so latency is measured at a steady offered load:

| client | protocol | what |
| --- | --- | --- |
| unary-http, unary-grpc | HTTP, gRPC | one request at a time, round robin over every stateless model |
| stream-grpc | gRPC ``ModelStreamInfer`` | sequences of --sequence-length updates to the ``streaming_detector`` ensemble (sequence batcher, implicit state, three steps), one ``mlp`` request between sequences |
| sequence-http | HTTP | sequences to ``snapshotter`` (correlation ids, start/end flags) |

Every answer is checked (``simple``: sum and difference; ``identity_bytes``: the same bytes;
``snapshotter``: the update is the snapshot's newest quarter; the rest: shape and finite
values). Every --reload-secs one model is reloaded, in turn: even turns reload a model in
place (``load`` on a loaded model: Triton's reload, which must drop nothing), odd turns unload
a stateless model no ensemble uses and load it back. Errors for that model between its unload
and the end of its load are expected; any other error or wrong answer is not.

Recorded: every request's latency by client and minute (p50, p99), errors (expected and not,
with the first messages), the resident memory (RSS) of the server process and of its whole
process tree (python models run in worker processes) every --rss-secs, and the reloads. RSS
growth is measured from the first minute after --warmup-minutes to the last minute; p99
stability as the largest per-minute p99 over the median per-minute p99, after warm-up.

Output: ``results/reliability/soak.json`` (machine, settings, summary, per-minute records) and
a rich table.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serve_models.report import write_document  # noqa: E402

BENCHMARK = "reliability/soak"
MAX_MINUTES = 120.0
STATELESS = (
    "simple",
    "python_add",
    "identity_bytes",
    "mlp",
    "noise_remover",
    "mlp_torchscript",
    "strain_cleaner",
    "strain_detector",
)
"""Models answered request by request; the last two are also steps of ``streaming_detector``."""
UNLOADABLE = STATELESS[:6]
"""Stateless models no ensemble uses: unloaded and loaded back on odd reload turns."""
RESPONSE_TIMEOUT_S = 30.0
RSS_LIMIT_PCT = 5.0
"""Resident memory may grow less than this from the first minute after warm-up to the last."""
P99_LIMIT = 2.0
"""A client's worst per-minute p99 after warm-up may be at most this times its median one."""
START_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="(default %(default)s, max 120)")
    p.add_argument("--warmup-minutes", type=float, default=1.0, help="(default %(default)s)")
    p.add_argument(
        "--reload-secs", type=float, default=30.0, help="seconds between reloads (default 30)"
    )
    p.add_argument(
        "--rate", type=float, default=20.0, help="requests/s of each unary client (default 20)"
    )
    p.add_argument(
        "--sequence-rate",
        type=float,
        default=10.0,
        help="updates/s of each sequence client (default 10)",
    )
    p.add_argument(
        "--sequence-length", type=int, default=8, help="updates per sequence (default 8)"
    )
    p.add_argument("--note", default="", help="free text kept with the results (default none)")
    p.add_argument("--rss-secs", type=float, default=2.0, help="RSS sampling period (default 2)")
    p.add_argument("--out", type=Path, default=HERE.parent / "results/reliability/soak.json")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        p.error(f"--minutes must be in (0, {MAX_MINUTES:g}], got {args.minutes}")
    if not 0 <= args.warmup_minutes < args.minutes:
        p.error("--warmup-minutes must be at least 0 and shorter than --minutes")
    for name in ("reload_secs", "rate", "sequence_rate", "rss_secs"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.sequence_length < 2:
        p.error("--sequence-length must be at least 2")
    return args


# --- what the clients record ---------------------------------------------------------------


@dataclass
class Window:
    """A model's unload-to-loaded span: its errors in there are expected."""

    model: str
    start: float
    end: float = float("inf")


@dataclass
class Recorder:
    """Latencies by (client, minute), errors, wrong answers; shared by the client threads."""

    started: float
    latencies: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[dict[str, Any]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, client: str, seconds: float) -> None:
        minute = int((time.monotonic() - self.started) // 60)
        with self.lock:
            self.latencies[(client, minute)].append(seconds * 1000.0)

    def error(self, client: str, model: str, message: str, *, wrong: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            expected = not wrong and any(
                w.model == model and w.start <= now <= w.end + 1.0 for w in self.windows
            )
            self.errors.append(
                {
                    "t_s": round(now - self.started, 3),
                    "client": client,
                    "model": model,
                    "expected": expected,
                    "wrong_answer": wrong,
                    "message": message[:300],
                }
            )


def paced(stop: threading.Event, rate: float, step: Callable[[], None]) -> None:
    """Call ``step`` ``rate`` times a second until ``stop`` (late calls do not bunch up)."""
    period = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        step()
        next_at = max(next_at + period, time.monotonic() - period)
        stop.wait(max(0.0, next_at - time.monotonic()))


# --- requests and their checks --------------------------------------------------------------

Inputs = list[tuple[str, np.ndarray, str]]


def model_inputs(model: str, rng: np.random.Generator) -> Inputs:
    if model == "simple":
        a = rng.integers(-100, 100, (1, 16), dtype=np.int32)
        return [("INPUT0", a, "INT32"), ("INPUT1", a[:, ::-1].copy(), "INT32")]
    if model == "python_add":
        a = rng.standard_normal(4).astype(np.float32)
        return [("INPUT0", a, "FP32"), ("INPUT1", a * 2, "FP32")]
    if model == "identity_bytes":
        data = np.array([[f"soak-{rng.integers(1 << 30)}".encode(), b"\x00two"]], dtype=object)
        return [("INPUT0", data, "BYTES")]
    if model in ("mlp", "noise_remover"):
        return [("INPUT0", rng.standard_normal((2, 64)).astype(np.float32), "FP32")]
    if model == "mlp_torchscript":
        return [("INPUT__0", rng.standard_normal((2, 64)).astype(np.float32), "FP32")]
    if model == "strain_cleaner":
        return [("noisy", rng.standard_normal((1, 2, 1024)).astype(np.float32), "FP32")]
    if model == "strain_detector":
        return [("strain", rng.standard_normal((1, 2, 1024)).astype(np.float32), "FP32")]
    raise ValueError(f"no inputs for model {model!r}")


def wrong_answer(model: str, inputs: Inputs, outputs: dict[str, np.ndarray]) -> str | None:
    """Why an answer is wrong, or None."""
    if model == "simple":
        a, b = inputs[0][1], inputs[1][1]
        if not (
            np.array_equal(outputs["OUTPUT0"], a + b) and np.array_equal(outputs["OUTPUT1"], a - b)
        ):
            return "simple: OUTPUT0/OUTPUT1 are not the sum/difference"
        return None
    if model == "python_add":
        a, b = inputs[0][1], inputs[1][1]
        if not np.allclose(outputs["OUTPUT0"], a + b):
            return "python_add: OUTPUT0 is not the sum"
        return None
    if model == "identity_bytes":
        if outputs["OUTPUT0"].tolist() != inputs[0][1].tolist():
            return "identity_bytes: OUTPUT0 differs from INPUT0"
        return None
    if model == "snapshotter":
        update = inputs[0][1]
        if not np.array_equal(outputs["snapshot"][..., -update.shape[-1] :], update):
            return "snapshotter: the snapshot's newest quarter is not the update"
        return None
    for name, value in outputs.items():
        if value.shape[0] != inputs[0][1].shape[0] or not np.isfinite(value).all():
            return f"{model}: output {name} has shape {value.shape} or non-finite values"
    return None


class Unary:
    """One client over HTTP or gRPC, round robin over the stateless models."""

    def __init__(self, protocol: str, url: str, recorder: Recorder, seed: int) -> None:
        if protocol == "http":
            import tritonclient.http as client_module
        else:
            import tritonclient.grpc as client_module  # type: ignore[no-redef]
        self.module = client_module
        if protocol == "http":
            self.client = client_module.InferenceServerClient(
                url, network_timeout=RESPONSE_TIMEOUT_S
            )
            self.timeout: dict[str, float] = {}
        else:
            self.client = client_module.InferenceServerClient(url)
            self.timeout = {"client_timeout": RESPONSE_TIMEOUT_S}
        self.name = f"unary-{protocol}"
        self.recorder = recorder
        self.rng = np.random.default_rng(seed)
        self.turn = 0

    def step(self) -> None:
        model = STATELESS[self.turn % len(STATELESS)]
        self.turn += 1
        self.infer(model, model_inputs(model, self.rng))

    def infer(self, model: str, inputs: Inputs, **sequence: Any) -> None:
        tensors = []
        for name, value, dtype in inputs:
            tensor = self.module.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        started = time.monotonic()
        try:
            result = self.client.infer(model, tensors, **self.timeout, **sequence)
        except Exception as exc:
            self.recorder.error(self.name, model, str(exc))
            return
        elapsed = time.monotonic() - started
        outputs = {o: result.as_numpy(o) for o in _output_names(result)}
        why = wrong_answer(model, inputs, outputs)
        if why is not None:
            self.recorder.error(self.name, model, why, wrong=True)
        else:
            self.recorder.ok(self.name, elapsed)

    def close(self) -> None:
        self.client.close()


def _output_names(result: Any) -> list[str]:
    response = result.get_response()
    if isinstance(response, dict):
        return [o["name"] for o in response["outputs"]]
    return [o.name for o in response.outputs]


class SequenceHttp:
    """Sequences to ``snapshotter`` over HTTP, one update per step."""

    def __init__(self, url: str, recorder: Recorder, length: int, first_id: int) -> None:
        self.unary = Unary("http", url, recorder, seed=first_id)
        self.unary.name = "sequence-http"
        self.length = length
        self.sequence_id = first_id
        self.position = 0

    def step(self) -> None:
        start = self.position == 0
        end = self.position == self.length - 1
        update = self.unary.rng.standard_normal((1, 2, 256)).astype(np.float32)
        self.unary.infer(
            "snapshotter",
            [("update", update, "FP32")],
            sequence_id=self.sequence_id,
            sequence_start=start,
            sequence_end=end,
        )
        self.position += 1
        if end:
            self.position = 0
            self.sequence_id += 1


class StreamGrpc:
    """One ``ModelStreamInfer`` stream: ensemble sequences, an ``mlp`` request between them."""

    def __init__(self, url: str, recorder: Recorder, length: int, first_id: int) -> None:
        import tritonclient.grpc as grpcclient

        self.module = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.recorder = recorder
        self.length = length
        self.sequence_id = first_id
        self.position = 0
        self.rng = np.random.default_rng(first_id)
        self.answers: Queue[tuple[Any, Any]] = Queue()
        self.client.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def step(self) -> None:
        if self.position == self.length:  # between sequences: one plain request
            self.position = 0
            self.sequence_id += 1
            inputs = model_inputs("mlp", self.rng)
            self.send("mlp", inputs, {})
            return
        start, end = self.position == 0, self.position == self.length - 1
        update = self.rng.standard_normal((1, 2, 256)).astype(np.float32)
        flags = {"sequence_id": self.sequence_id, "sequence_start": start, "sequence_end": end}
        self.send("streaming_detector", [("update", update, "FP32")], flags)
        self.position += 1

    def send(self, model: str, inputs: Inputs, flags: dict[str, Any]) -> None:
        tensors = []
        for name, value, dtype in inputs:
            tensor = self.module.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        started = time.monotonic()
        self.client.async_stream_infer(model, tensors, **flags)
        try:
            result, error = self.answers.get(timeout=RESPONSE_TIMEOUT_S)
        except Empty:
            self.recorder.error("stream-grpc", model, f"no answer within {RESPONSE_TIMEOUT_S} s")
            return
        elapsed = time.monotonic() - started
        if error is not None:
            self.recorder.error("stream-grpc", model, str(error))
            return
        outputs = {o: result.as_numpy(o) for o in _output_names(result)}
        why = wrong_answer(model, inputs, outputs)
        if why is not None:
            self.recorder.error("stream-grpc", model, why, wrong=True)
        else:
            self.recorder.ok("stream-grpc", elapsed)

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


# --- the server, its memory, its reloads ----------------------------------------------------


def start_server(repo: Path, work: Path) -> tuple[subprocess.Popen[bytes], dict[str, int], Path]:
    ports_file, log = work / "ports.json", work / "serve.log"
    command = [
        sys.executable, "-m", "headrace.cli", "serve", str(repo),
        "--model-control-mode", "explicit", "--load-model", "*",
        "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
        "--ports-file", str(ports_file),
    ]  # fmt: skip
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ports_file.exists():
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"headrace serve did not start in {START_TIMEOUT_S:g} s"
                ) from None
            continue
        raise RuntimeError(
            f"headrace serve exited with {process.returncode}: {log.read_text()[-2000:]}"
        )
    return process, json.loads(ports_file.read_text()), log


def sample_rss(pid: int) -> tuple[int, int, int]:
    """RSS of the server process, of its whole tree, and how many processes the tree has."""
    import psutil

    main = psutil.Process(pid)
    rss = main.memory_info().rss
    tree = rss
    children = main.children(recursive=True)
    for child in children:
        try:
            tree += child.memory_info().rss
        except psutil.Error:
            pass
    return rss, tree, 1 + len(children)


def watch_rss(
    pid: int, period: float, stop: threading.Event, started: float, out: list[dict[str, Any]]
) -> None:
    while not stop.is_set():
        try:
            main, tree, processes = sample_rss(pid)
        except Exception:
            return
        out.append(
            {
                "t_s": round(time.monotonic() - started, 2),
                "rss": main,
                "tree_rss": tree,
                "processes": processes,
            }
        )
        stop.wait(period)


def reloads(
    http_url: str, grpc_url: str, recorder: Recorder, period: float, stop: threading.Event,
    out: list[dict[str, Any]],
) -> None:  # fmt: skip
    """Every ``period``: an in-place reload (even turns) or an unload and load (odd turns)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(http_url, network_timeout=120.0)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    turn = 0
    try:
        while not stop.wait(period):
            in_place = turn % 2 == 0
            rotation = STATELESS if in_place else UNLOADABLE
            model = rotation[(turn // 2) % len(rotation)]
            turn += 1
            record: dict[str, Any] = {
                "t_s": round(time.monotonic() - recorder.started, 2),
                "model": model,
                "action": "reload" if in_place else "unload+load",
            }
            started = time.monotonic()
            try:
                if in_place:
                    grpc.load_model(model)
                else:
                    window = Window(model, time.monotonic())
                    with recorder.lock:
                        recorder.windows.append(window)
                    try:
                        http.unload_model(model)
                        http.load_model(model)
                    finally:
                        window.end = time.monotonic()
                ready = http.is_model_ready(model)
                record["error"] = None if ready else "not ready after load"
            except Exception as exc:
                record["error"] = str(exc)[:300]
            record["seconds"] = round(time.monotonic() - started, 3)
            out.append(record)
    finally:
        http.close()
        grpc.close()


def stop_server(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return {"exit_code": code, "stop_seconds": round(time.monotonic() - started, 2)}


# --- the summary ----------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def per_minute(latencies: dict[tuple[str, int], list[float]]) -> list[dict[str, Any]]:
    rows = []
    for (client, minute), values in sorted(latencies.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rows.append(
            {
                "minute": minute,
                "client": client,
                "requests": len(values),
                "p50_ms": round(_pct(values, 50), 3),
                "p99_ms": round(_pct(values, 99), 3),
            }
        )
    return rows


def rss_growth(samples: list[dict[str, Any]], key: str, warmup_s: float) -> dict[str, Any] | None:
    """Median RSS of the first minute after warm-up vs of the last minute."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if not after:
        return None
    first = [s[key] for s in after if s["t_s"] < warmup_s + 60.0]
    last_start = after[-1]["t_s"] - 60.0
    last = [s[key] for s in after if s["t_s"] >= last_start]
    base, end = statistics.median(first), statistics.median(last)
    return {
        "after_warmup_mib": round(base / 2**20, 1),
        "last_minute_mib": round(end / 2**20, 1),
        "peak_mib": round(max(s[key] for s in after) / 2**20, 1),
        "growth_pct": round(100.0 * (end - base) / base, 2),
    }


def summarize(
    minutes: list[dict[str, Any]], errors: list[dict[str, Any]], rss: list[dict[str, Any]],
    reloads_done: list[dict[str, Any]], warmup_minutes: float, run_minutes: float,
) -> dict[str, Any]:  # fmt: skip
    warm = int(np.ceil(warmup_minutes))
    full = int(run_minutes)  # minutes from here on are partial (or the clients' last answers)
    p99: dict[str, Any] = {}
    for client in sorted({row["client"] for row in minutes}):
        values = [
            r["p99_ms"] for r in minutes if r["client"] == client and warm <= r["minute"] < full
        ]
        if not values:
            continue
        median = statistics.median(values)
        p99[client] = {
            "requests": sum(r["requests"] for r in minutes if r["client"] == client),
            "p99_ms_median": round(median, 2),
            "p99_ms_min": round(min(values), 2),
            "p99_ms_max": round(max(values), 2),
            "p99_max_over_median": round(max(values) / median, 2) if median else None,
        }
    unexpected = [e for e in errors if not e["expected"]]
    server_rss = rss_growth(rss, "rss", warmup_minutes * 60.0)
    tree_rss = rss_growth(rss, "tree_rss", warmup_minutes * 60.0)
    ratios = [row["p99_max_over_median"] for row in p99.values()]
    kinds = Counter((e["client"], e["model"], e["message"][:120]) for e in unexpected)
    return {
        "requests_ok": sum(r["requests"] for r in minutes),
        "errors_expected": len(errors) - len(unexpected),
        "errors_unexpected": len(unexpected),
        "wrong_answers": sum(1 for e in errors if e["wrong_answer"]),
        "unexpected_by_kind": [
            {"client": c, "model": m, "message": t, "count": n}
            for (c, m, t), n in kinds.most_common(10)
        ],
        "first_unexpected_errors": unexpected[:10],
        "first_expected_errors": [e for e in errors if e["expected"]][:5],
        "reloads": len(reloads_done),
        "reloads_failed": sum(1 for r in reloads_done if r["error"]),
        "rss_server": server_rss,
        "rss_tree": tree_rss,
        "p99_after_warmup": p99,
        "verdict": {
            "no_unexpected_errors": not unexpected,
            "no_failed_reloads": not any(r["error"] for r in reloads_done),
            f"rss_growth_under_{RSS_LIMIT_PCT:g}pct": all(
                r is not None and r["growth_pct"] < RSS_LIMIT_PCT for r in (server_rss, tree_rss)
            ),
            f"p99_max_over_median_at_most_{P99_LIMIT:g}": bool(ratios)
            and all(r is not None and r <= P99_LIMIT for r in ratios),
        },
    }


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.monotonic()
    from rich.console import Console
    from rich.table import Table

    from headrace.repository.examples import create_examples_repository

    signal.signal(signal.SIGTERM, _interrupted)  # stop the server on the way out

    console = Console()
    error = None
    rss: list[dict[str, Any]] = []
    reloads_done: list[dict[str, Any]] = []
    recorder = Recorder(started=0.0)
    stopped: dict[str, Any] = {}
    log_tail = ""
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        create_examples_repository(work / "repo")
        process, ports, log = start_server(work / "repo", work)
        http_url, grpc_url = f"127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}"
        stop = threading.Event()
        threads: list[threading.Thread] = []
        clients: list[Any] = []
        try:
            clients = [
                Unary("http", http_url, recorder, seed=1),
                Unary("grpc", grpc_url, recorder, seed=2),
                StreamGrpc(grpc_url, recorder, args.sequence_length, first_id=1_000_000),
                SequenceHttp(http_url, recorder, args.sequence_length, first_id=2_000_000),
            ]
            rates = [args.rate, args.rate, args.sequence_rate, args.sequence_rate]
            recorder.started = time.monotonic()
            for client, rate in zip(clients, rates):
                threads.append(
                    threading.Thread(target=paced, args=(stop, rate, client.step), daemon=True)
                )
            threads.append(
                threading.Thread(
                    target=watch_rss,
                    args=(process.pid, args.rss_secs, stop, recorder.started, rss),
                    daemon=True,
                )
            )
            threads.append(
                threading.Thread(
                    target=reloads,
                    args=(http_url, grpc_url, recorder, args.reload_secs, stop, reloads_done),
                    daemon=True,
                )
            )
            for thread in threads:
                thread.start()
            console.print(
                f"soaking {args.minutes:g} min: server pid {process.pid}, {http_url}, {grpc_url}"
            )
            deadline = recorder.started + args.minutes * 60.0
            while (left := deadline - time.monotonic()) > 0:
                if process.poll() is not None:
                    error = f"headrace serve exited with {process.returncode} during the soak"
                    break
                stop.wait(min(left, 60.0))
                done = sum(len(v) for v in recorder.latencies.values())
                console.print(
                    f"{(time.monotonic() - recorder.started) / 60:5.1f} min: {done} answers, "
                    f"{len(recorder.errors)} errors, {len(reloads_done)} reloads, "
                    f"RSS {rss[-1]['rss'] / 2**20 if rss else 0:.0f} MiB"
                )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=RESPONSE_TIMEOUT_S + 5)
            for client in clients:
                try:
                    client.close()
                except Exception:
                    pass
            stopped = stop_server(process)
            log_tail = log.read_text(errors="replace")[-3000:]
    minutes = per_minute(recorder.latencies)
    summary = summarize(
        minutes, recorder.errors, rss, reloads_done, args.warmup_minutes, args.minutes
    )
    summary["server_stop"] = stopped
    records = {
        "per_minute": minutes,
        "errors": recorder.errors[:500],
        "rss": rss,
        "reloads": reloads_done,
        "server_log_tail": log_tail
        if summary["errors_unexpected"] or stopped.get("exit_code")
        else "",
    }
    write_document(
        args.out, BENCHMARK, argv, args, started=started, error=error, summary=summary,
        records=records,  # type: ignore[arg-type]
    )  # fmt: skip
    table = Table(title=f"headrace serve soak, {args.minutes:g} min")
    for column in ("client", "requests", "p99 median ms", "p99 min-max ms", "max/median"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for client, row in summary["p99_after_warmup"].items():
        table.add_row(
            client, str(row["requests"]), f"{row['p99_ms_median']:.1f}",
            f"{row['p99_ms_min']:.1f}-{row['p99_ms_max']:.1f}", f"{row['p99_max_over_median']}",
        )  # fmt: skip
    console.print(table)
    for key in ("rss_server", "rss_tree"):
        console.print(f"{key}: {summary[key]}")
    console.print(
        f"errors: {summary['errors_unexpected']} unexpected, {summary['errors_expected']} expected "
        f"(during unloads), {summary['wrong_answers']} wrong answers; reloads {summary['reloads']} "
        f"({summary['reloads_failed']} failed); server stop {stopped}"
    )
    console.print(f"verdict: {summary['verdict']}")
    console.print(f"wrote {args.out}")
    return 0 if error is None and all(summary["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
