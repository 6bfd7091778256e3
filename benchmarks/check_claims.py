"""Check that the figures the READMEs quote are what the result files hold.

    python benchmarks/check_claims.py          # one line per claim; exit 1 on a mismatch

A claim is a few exact words of a doc that hold a range ("c=16 0.69-1.08") or one number,
the result file it cites and a selector for the values it summarises. The range must span
every selected value: its low end is the smallest value, its high end the largest, each to
the precision the doc writes (half a unit either way), so a range that leaves a row out, or a
number edited by hand, fails. Docs wrap lines, so whitespace runs count as one space.

Selectors walk the JSON: ``.key`` takes a field, ``[*]`` every item of a list (or value of an
object), ``[key=value]`` keeps the list items whose field prints as ``value``, ``[key^=v]``
(``[key$=v]``) those whose field starts (ends) with ``v``, ``[key~=a,b]`` those whose field is
one of ``a``, ``b``, ``[key!=v]`` the others, ``[key]`` those that have the field; filters that follow one another narrow the same
items. A trailing ``*FACTOR`` (or a claim's ``scale``) multiplies the values: µs to ms,
fractions to percent.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_RANGE = re.compile(rf"({_NUMBER})\s*-\s*({_NUMBER})")
_SINGLE = re.compile(_NUMBER)
_TOKEN = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")
_FACTOR = re.compile(r"\*([\d.]+)$")
_FILTER = re.compile(r"^(\w+)(?:(=|\^=|\$=|!=|~=)(.*))?$")


@dataclass(frozen=True)
class Claim:
    """Words of ``doc`` quoting a range (or one number) over ``path`` in ``result``."""

    doc: str
    text: str
    result: str
    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class Row:
    """Words of ``doc`` (a table row) whose numbers, in order, are one value each.

    ``cells`` holds one selector per number in ``text`` (``None``: a label, not checked).
    """

    doc: str
    text: str
    result: str
    cells: tuple[str | None, ...]
    scale: float = 1.0


def select(data: Any, path: str) -> list[Any]:
    """Every value ``path`` reaches in ``data`` (see the module docstring)."""
    nodes = [data]
    position = 0
    path = path if path.startswith((".", "[")) else "." + path
    for match in _TOKEN.finditer(path):
        if match.start() != position:
            raise ValueError(f"selector {path!r}: cannot read {path[position:]!r}")
        position = match.end()
        key, bracket = match.groups()
        if key is not None:
            nodes = [_field(node, key, path) for node in nodes]
        elif bracket == "*":
            nodes = [item for node in nodes for item in _items(node, path)]
        elif bracket.isdigit():
            nodes = [node[int(bracket)] for node in nodes]
        else:
            nodes = _filter(nodes, bracket, path)
    if position != len(path):
        raise ValueError(f"selector {path!r}: cannot read {path[position:]!r}")
    return nodes


def _field(node: Any, key: str, path: str) -> Any:
    if not isinstance(node, dict) or key not in node:
        raise LookupError(f"selector {path!r}: no field {key!r} in {_short(node)}")
    return node[key]


def _items(node: Any, path: str) -> Iterable[Any]:
    if isinstance(node, dict):
        return node.values()
    if isinstance(node, list):
        return node
    raise TypeError(f"selector {path!r}: [*] on {_short(node)}")


def _filter(nodes: list[Any], bracket: str, path: str) -> list[Any]:
    parsed = _FILTER.match(bracket)
    if not parsed:
        raise ValueError(f"selector {path!r}: cannot read [{bracket}]")
    key, op, wanted = parsed.groups()
    candidates = [item for node in nodes for item in (node if isinstance(node, list) else [node])]

    def keep(item: Any) -> bool:
        if not isinstance(item, dict) or item.get(key) is None:
            return False
        value = str(item[key])
        if op is None:
            return True
        if op == "=":
            return value == wanted
        if op == "^=":
            return value.startswith(wanted)
        if op == "$=":
            return value.endswith(wanted)
        if op == "~=":
            return value in wanted.split(",")
        return value != wanted

    return [item for item in candidates if keep(item)]


def _short(node: Any) -> str:
    text = json.dumps(node, default=str)
    return text if len(text) < 80 else text[:77] + "..."


def quoted(text: str) -> tuple[str, str]:
    """The range a claim's words quote, as written: its first ``A-B``, else its last number."""
    found = _RANGE.search(_normal(text))
    if found:
        return found.group(1), found.group(2)
    numbers = _SINGLE.findall(_normal(text))
    if not numbers:
        raise ValueError(f"claim {text!r} quotes no number")
    return numbers[-1], numbers[-1]


def _matches(written: str, value: float) -> bool:
    decimals = len(written.partition(".")[2])
    return abs(float(written.replace(",", "")) - value) <= 0.5 * 10**-decimals + 1e-9


def _normal(text: str) -> str:
    """Whitespace runs as one space, an en dash as a hyphen (docs use both for ranges)."""
    return " ".join(text.replace("\u2013", "-").split())


def check(claim: Claim | Row, root: Path = ROOT) -> list[str]:
    """What is wrong with ``claim``; empty when the doc quotes what the file holds."""
    doc = _normal((root / claim.doc).read_text())
    if _normal(claim.text) not in doc:
        return [f"{claim.doc} no longer says {claim.text!r}"]
    data = json.loads((root / "benchmarks" / "results" / claim.result).read_text())
    if isinstance(claim, Claim):
        return _span(claim.result, data, claim.path, quoted(claim.text), claim.scale)
    numbers = _SINGLE.findall(claim.text)
    if len(numbers) != len(claim.cells):
        return [f"{claim.text!r} holds {len(numbers)} numbers, the claim {len(claim.cells)}"]
    problems = []
    for written, path in zip(numbers, claim.cells):
        if path is not None:
            problems += _span(claim.result, data, path, (written, written), claim.scale)
    return [f"{claim.doc}: {claim.text!r}: {p}" for p in problems]


def _span(result: str, data: Any, path: str, written: tuple[str, str], scale: float) -> list[str]:
    factor = _FACTOR.search(path)
    if factor:
        path, scale = path[: factor.start()], scale * float(factor.group(1))
    try:
        values = select(data, path)
    except (LookupError, TypeError, ValueError) as exc:
        return [f"{result}: {exc}"]
    if not values:
        return [f"{result}: selector {path!r} reaches no value"]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        return [f"{result}: selector {path!r} reaches a non-number: {_short(values)}"]
    scaled = [v * scale for v in values]
    low, high = written
    if _matches(low, min(scaled)) and _matches(high, max(scaled)):
        return []
    return [
        f"quotes {low}-{high}, {result} {path} holds {min(scaled):.4g}-{max(scaled):.4g}"
        f" over {len(scaled)} values"
    ]


BENCH = "benchmarks/README.md"
_SCALE = "serve_scaleout.json"
_SCALE_CPU = "records[part=scaleout][nodes={nodes}].frontend_cpu_us_per_inference"
_SCALE_OVER = "records[part=overhead][system={s}][concurrency={c}].{k}"
_SCALE_ROUNDS = "summary.overhead[concurrency={c}].rounds[*].{k}"
_FE = "frontend_cpu_us_per_inference"
TOP = "README.md"


def _pipeline_row(text: str, result: str, delay: float, bounds: bool = True) -> Row:
    case = f"results[cpu_delay_ms={delay}]"
    cells: tuple[str | None, ...] = (
        None,
        *tuple(f"{case}[num_buffers={n}].batches_per_s" for n in (1, 2, 3, 4)),
    )
    if bounds:
        cells += (
            f"{case}[num_buffers=1].sequential_bound_batches_per_s",
            f"{case}[num_buffers=1].ideal_batches_per_s",
        )
    return Row(BENCH, text, result, cells)


_SPIN2 = "results[cpu_delay_ms=2.0][num_buffers=2]"
_SPIN4 = "results[cpu_delay_ms=4.0][num_buffers=2]"


def _spin_row(text: str, delay: float) -> Row:
    row = _pipeline_row(text, "pipeline_cpu_spin.json", delay)
    case = f"results[cpu_delay_ms={delay}]"
    compute = tuple(f"{case}[num_buffers={n}].stage_mean_ms.compute" for n in (1, 4))
    return dataclasses.replace(row, cells=(*row.cells, *compute))


def _load(model: str, protocol: str, concurrency: int) -> str:
    return f"summary[model={model}][protocol={protocol}][concurrency={concurrency}]"


def _vs_triton(model: str, protocol: str, levels: tuple[int, ...], p99: bool) -> tuple[str, ...]:
    cells: list[str] = []
    for c in levels:
        row = _load(model, protocol, c)
        cells.append(f"{row}.headrace_over_triton")
        if p99:
            cells += [f"{row}.headrace.p99_us*0.001", f"{row}.triton.p99_us*0.001"]
    return tuple(cells)


def _probe_row(text: str, model: str, protocol: str, c: int) -> Row:
    row = _load(model, protocol, c)
    return Row(
        BENCH,
        text,
        "serve_overhead_probe.json",
        (
            None,
            f"{row}.headrace_over_triton",
            f"{row}.headrace.p99_us*0.001",
            f"{row}.triton.p99_us*0.001",
            f"{row}.headrace.server_cpu_us_per_inference",
            f"{row}.triton.server_cpu_us_per_inference",
        ),
    )


def _probe_grpc_row(text: str, model: str) -> Row:
    rows = [_load(model, "grpc", c) for c in (16, 64)]
    cells: list[str | None] = [None, None]
    cells += [f"{row}.headrace_over_triton" for row in rows]
    for metric in ("p99_us*0.001", "server_cpu_us_per_inference"):
        cells += [f"{row}.{system}.{metric}" for row in rows for system in ("headrace", "triton")]
    return Row(BENCH, text, "serve_overhead_probe.json", tuple(cells))


def _stack_row(text: str, stack: str) -> Row:
    cells: list[str] = []
    for c in (1, 16):
        row = f"summary[stack={stack}][concurrency={c}]"
        cells += [f"{row}.throughput", f"{row}.throughput_vs_aiohttp", f"{row}.p50_us*0.001"]
    return Row(BENCH, text, "http_stack.json", tuple(cells))


def _ceiling_row(text: str, *servers: str) -> Row:
    labels = sum(1 for _ in _SINGLE.finditer(text.split("|")[1]))
    cells: list[str | None] = [None] * labels
    for metric in ("median_throughput", "median_p99_us*0.001", "median_server_cpu_us_per_request"):
        cells += [f"results.{server}.{metric}" for server in servers]
    return Row(BENCH, text, "frontend_ceiling.json", tuple(cells))


def _offline_row(text: str, system: str, labels: int = 0) -> Row:
    runs = tuple(f"systems.{system}.rows_per_second[{i}]" for i in range(3))
    cells = (None,) * labels + (f"systems.{system}.median_rows_per_second", *runs)
    return Row(BENCH, text, "offline.json", (*cells, f"systems.{system}.ratio_vs_plain"))


def _scaleout_row(text: str, delay: float, workers: int, buffers: int) -> Row:
    case = f"results[cpu_delay_ms={delay}][workers={workers}][num_buffers={buffers}]"
    per_worker = tuple(f"{case}.per_worker_batches_per_s[{i}]" for i in range(workers))
    cells = (None, None, None, f"{case}.batches_per_s", *per_worker)
    return Row(
        BENCH, text, "pipeline_scaleout_cpu.json", (*cells, f"{case}.scaling_efficiency*100")
    )


def _cache_row(text: str, system: str, c: int) -> Row:
    row = f"summary[system={system}][concurrency={c}]"
    cells = [None]
    for side in ("off", "on"):
        cells += [
            f"{row}.throughput_{side}",
            f"{row}.p50_us_{side}*0.001",
            f"{row}.p99_us_{side}*0.001",
        ]
    return Row(BENCH, text, "response_cache.json", (*cells, f"{row}.throughput_ratio", None, None))


_SHM = "summary[system=headrace][path=shm]"
_SO2 = "serve_overhead_session2.json"
_QUIET = "serve_overhead_quiet.json"
_AFTER = "serve_overhead_compute_after_threads.json"
_LIGHT_HTTP = "summary[model~=identity_python,mlp_python][protocol=http]"
_CLOSED = "summary[mode=closed]"
_OVER = "reliability/overload.json"
_OVER_QUIET = "reliability/overload_quiet.json"
_FAULTS = "reliability/faults.json"
_SOAK_QUIET = "reliability/soak_quiet.json"
_DOORS = "doors_after_hardening.json"
_SSE_SMALL = "stream_backlog_sse_small.json"
_SSE_LARGE = "stream_backlog_sse_large.json"
_DOORS_AB = "records[setting={s}][protocol={p}].throughput"

_SCAN = "bench_scan_particlenet_cpu.json"
_VS_PA = "bench_load_vs_perf_analyzer.json"
_VS_PA_PINNED = "bench_load_vs_perf_analyzer_pinned.json"
_VS_PA_DECOUPLED = "bench_load_vs_perf_analyzer_decoupled.json"
_C1 = "http_c1_clients.json"
_DECOUPLED_P50_RATIOS = "summary.points[*].p50_ratio"
_STREAM_DECODER = "grpc_stream_decoder.json"
_HTTP_MEMO = "http_header_memo.json"
_MEMO_ID16 = "summary[model=identity_python][concurrency=16]"
_DEADLINES = "http_read_deadlines.json"
_PROCESSES = "serve_processes.json"
_PROC_ID_GRPC16 = "summary[model=identity_python][protocol=grpc][concurrency=16]"
_PROC_ID_HTTP16 = "summary[model=identity_python][protocol=http][concurrency=16]"
_TUNE_FIXED = "bench_tune/fixed_cost_plain.json"
_TUNE_MLP = "bench_tune/mlp_own.json"
_TUNE_MLP_PLAIN = "bench_tune/mlp_plain.json"
_TUNE_MLP_C1 = "bench_tune/mlp_own_c1.json"
_SPIN = "serve_ab_onnx_spinning.json"
_TUNE_PN = "bench_tune/particlenet_plain.json"


def _gain(concurrency: int) -> str:
    return f"side_by_side[concurrency={concurrency}].throughput_gain"


def _side_by_side(concurrency: int, cells: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """Selectors into one side-by-side entry: ``throughput``/``p99`` of the pick, with
    ``_baseline`` of the model's own config, ``gain``; None for a label."""
    pair = f"side_by_side[concurrency={concurrency}]"
    paths = {
        "gain": f"{pair}.throughput_gain",
        "throughput": f"{pair}.chosen.throughput",
        "throughput_baseline": f"{pair}.baseline.throughput",
        "p99": f"{pair}.chosen.p99_ms",
        "p99_baseline": f"{pair}.baseline.p99_ms",
    }
    return tuple(None if cell is None else paths[cell] for cell in cells)


def _pa_point(model: str, protocol: str, concurrency: int) -> str:
    return f"summary.points[model={model}][protocol={protocol}][concurrency={concurrency}]"


def _pa(model: str, protocol: str, concurrency: int) -> str:
    return f"{_pa_point(model, protocol, concurrency)}.ratio"


def _c1(client: str, field: str) -> str:
    return f"summary.clients[client={client}].{field}"


CLAIMS: tuple[Claim | Row, ...] = (
    # bench_scan_particlenet_cpu.json: headrace bench scan, direct vs served, ONNX and TorchScript
    Claim(
        TOP, "ONNX ran 2,593-4,040", _SCAN, "points[model=particlenet][mode=direct].throughput_mean"
    ),
    Claim(
        TOP,
        "jets/s direct and 606-3,396 served",
        _SCAN,
        "points[model=particlenet][mode~=http,grpc].throughput_mean",
    ),
    Claim(
        TOP,
        "TorchScript 1,577-4,413 direct",
        _SCAN,
        "points[model=particlenet_torchscript][mode=direct].throughput_mean",
    ),
    Claim(BENCH, "p50 latency 0.38-19.12 ms", _SCAN, "points[*].latency_ms.p50"),
    Claim(
        TOP,
        "534-3,640 served",
        _SCAN,
        "points[model=particlenet_torchscript][mode~=http,grpc].throughput_mean",
    ),
    # bench_load_vs_perf_analyzer_pinned.json: headrace bench load vs perf_analyzer, one
    # server, server and generators on separate cores
    Claim(BENCH, "measured 0.955-1.114x perf_analyzer's", _VS_PA_PINNED, "summary.points[*].ratio"),
    Claim(TOP, "measured 0.955-1.114x perf_analyzer's", _VS_PA_PINNED, "summary.points[*].ratio"),
    Claim(BENCH, "unary gRPC 0.955-0.984x", _VS_PA_PINNED, "summary.points[protocol=grpc].ratio"),
    Claim(
        BENCH,
        "gRPC streaming\n1.011-1.051x",
        _VS_PA_PINNED,
        "summary.points[protocol=grpc-stream].ratio",
    ),
    Claim(BENCH, "HTTP 0.986-1.114x", _VS_PA_PINNED, "summary.points[protocol=http].ratio"),
    Claim(BENCH, "model: 1.114x**", _VS_PA_PINNED, _pa("identity_bytes", "http", 1)),
    Claim(TOP, "(1.114x), where", _VS_PA_PINNED, _pa("identity_bytes", "http", 1)),
    # http_c1_clients.json: HTTP c=1 against a raw-socket floor client
    Row(
        BENCH,
        "headrace's generator measured 0.994x the floor and perf_analyzer 0.893x",
        _C1,
        (_c1("headrace", "ratio_to_raw"), _c1("perf_analyzer", "ratio_to_raw")),
    ),
    Row(
        BENCH,
        "(2,579 and 2,317 against 2,594 /s; p50 2 and 44 µs above the floor's 380 µs)",
        _C1,
        (
            _c1("headrace", "throughput"),
            _c1("perf_analyzer", "throughput"),
            _c1("raw", "throughput"),
            None,  # p50
            _c1("headrace", "p50_over_raw_us"),
            _c1("perf_analyzer", "p50_over_raw_us"),
            _c1("raw", "p50_us"),
        ),
    ),
    Claim(BENCH, "as libcurl does, measured 0.993x", _C1, _c1("raw-split", "ratio_to_raw")),
    Row(
        TOP,
        "generator measured 0.994x and perf_analyzer 0.893x",
        _C1,
        (_c1("headrace", "ratio_to_raw"), _c1("perf_analyzer", "ratio_to_raw")),
    ),
    Row(
        BENCH,
        "(2,594 against 2,329 /s; p50 377 against 418 µs;",
        _VS_PA_PINNED,
        tuple(
            None if field is None else f"{_pa_point('identity_bytes', 'http', 1)}.{field}"
            for field in (
                "headrace_throughput",
                "perf_analyzer_throughput",
                None,  # p50
                "headrace_p50_us",
                "perf_analyzer_p50_us",
            )
        ),
    ),
    Claim(
        BENCH,
        "2,561-2,624 against",
        _VS_PA_PINNED,
        "records[model=identity_bytes][protocol=http][concurrency=1][generator=headrace]"
        ".throughput",
    ),
    Claim(
        BENCH,
        "against 2,199-2,375 /s",
        _VS_PA_PINNED,
        "records[model=identity_bytes][protocol=http][concurrency=1][generator=perf_analyzer]"
        ".throughput",
    ),
    Claim(
        BENCH,
        "(queue 8-9 µs",
        _VS_PA_PINNED,
        "records[model=identity_bytes][protocol=http][concurrency=1].server_queue_us",
    ),
    Claim(
        BENCH,
        "infer 22-23 µs)",
        _VS_PA_PINNED,
        "records[model=identity_bytes][protocol=http][concurrency=1].server_compute_infer_us",
    ),
    Claim(
        BENCH,
        "headrace's generator spent 52-181 µs",
        _VS_PA_PINNED,
        "summary.points[*].headrace_client_cpu_us_per_request",
    ),
    Claim(
        BENCH,
        "perf_analyzer 54-106 µs",
        _VS_PA_PINNED,
        "summary.points[*].perf_analyzer_client_cpu_us_per_request",
    ),
    Row(
        BENCH,
        "against 1.012x and 1.011x now",
        _VS_PA_PINNED,
        (_pa("identity_bytes", "grpc-stream", 1), _pa("mlp", "grpc-stream", 1)),
    ),
    # http_header_memo.json: binary-extension headers decoded once, the body deadline
    Claim(
        BENCH,
        "commit before, 3 rounds each: 1.10-1.23x",
        _HTTP_MEMO,
        "summary[*].after_over_before",
    ),
    Row(
        BENCH,
        "(identity c=16 5,290 → 5,926 /s, MLP c=16 3,519 →\n4,250 /s)",
        _HTTP_MEMO,
        (
            None,
            f"{_MEMO_ID16}.before.throughput",
            f"{_MEMO_ID16}.after.throughput",
            None,
            "summary[model=mlp_python][concurrency=16].before.throughput",
            "summary[model=mlp_python][concurrency=16].after.throughput",
        ),
    ),
    Row(
        BENCH,
        "(identity c=16 209 → 184 µs)",
        _HTTP_MEMO,
        (
            None,
            f"{_MEMO_ID16}.before.server_cpu_us_per_inference",
            f"{_MEMO_ID16}.after.server_cpu_us_per_inference",
        ),
    ),
    # grpc_stream_parameters_memo*.json: stream responses' parameters from remembered bytes
    Claim(
        BENCH,
        "parameters_memo.json`): 0.88-1.17x",
        "grpc_stream_parameters_memo.json",
        "summary[*].after_over_before",
    ),
    Claim(
        BENCH,
        "(`grpc_stream_parameters_memo_id16.json`): 1.02x",
        "grpc_stream_parameters_memo_id16.json",
        "summary[*].after_over_before",
    ),
    # http_read_deadlines.json: one timer for the body reads' deadlines
    Claim(BENCH, "memo's\ncommit): 1.03-1.13x", _DEADLINES, "summary[*].after_over_before"),
    Row(
        BENCH,
        "(identity c=16\n185 → 166 µs, MLP c=64 195 → 174 µs)",
        _DEADLINES,
        (
            None,
            f"{_MEMO_ID16}.before.server_cpu_us_per_inference",
            f"{_MEMO_ID16}.after.server_cpu_us_per_inference",
            None,
            "summary[model=mlp_python][concurrency=64].before.server_cpu_us_per_inference",
            "summary[model=mlp_python][concurrency=64].after.server_cpu_us_per_inference",
        ),
    ),
    # grpc_stream_decoder.json: stream requests through the header memo, ids left out of it
    Claim(
        BENCH,
        "gRPC streaming 1.21-1.34x",
        _STREAM_DECODER,
        "summary[protocol=grpc-stream].after_over_before",
    ),
    Claim(
        BENCH,
        "unary gRPC 0.93-1.02x\nwith",
        _STREAM_DECODER,
        "summary[protocol=grpc].after_over_before",
    ),
    Row(
        BENCH,
        "(identity c=16 4,834 → 5,937 /s,",
        _STREAM_DECODER,
        (
            None,
            "summary[model=identity_python][protocol=grpc-stream][concurrency=16].before.throughput",
            "summary[model=identity_python][protocol=grpc-stream][concurrency=16].after.throughput",
        ),
    ),
    Row(
        BENCH,
        "232 → 190 µs at identity c=16)",
        _STREAM_DECODER,
        (
            "summary[model=identity_python][protocol=grpc-stream][concurrency=16]"
            ".before.server_cpu_us_per_inference",
            "summary[model=identity_python][protocol=grpc-stream][concurrency=16]"
            ".after.server_cpu_us_per_inference",
            None,
        ),
    ),
    # grpc_stream_backlog_fast_path.json: the backlog's release without a second lock
    Claim(
        BENCH,
        "`--protocols grpc-stream`, `--out\nbenchmarks/results/grpc_stream_backlog_fast_path.json`): 0.98-1.03x",
        "grpc_stream_backlog_fast_path.json",
        "summary[*].after_over_before",
    ),
    Row(
        BENCH,
        "(identity c=16 201.8 → 197.6 µs, MLP c=16 279.6 → 271.1 µs)",
        "grpc_stream_backlog_fast_path.json",
        (
            None,
            "summary[model=identity_python][concurrency=16].before.server_cpu_us_per_inference",
            "summary[model=identity_python][concurrency=16].after.server_cpu_us_per_inference",
            None,
            "summary[model=mlp_python][concurrency=16].before.server_cpu_us_per_inference",
            "summary[model=mlp_python][concurrency=16].after.server_cpu_us_per_inference",
        ),
    ),
    # serve_vs_triton_http.json: HTTP after the header memo and shared deadlines
    *(
        Row(
            BENCH,
            f"| {model} | {c} | {text} |",
            "serve_vs_triton_http.json",
            (
                None,
                f"summary[model={model}][concurrency={c}].headrace.throughput",
                f"summary[model={model}][concurrency={c}].headrace.p99_us*0.001",
                f"summary[model={model}][concurrency={c}].triton.throughput",
                f"summary[model={model}][concurrency={c}].triton.p99_us*0.001",
                f"summary[model={model}][concurrency={c}].headrace_over_triton",
                f"summary[model={model}][concurrency={c}].headrace.server_cpu_us_per_inference",
                f"summary[model={model}][concurrency={c}].triton.server_cpu_us_per_inference",
            ),
        )
        for model, c, text in (
            ("identity_python", 16, "6,097, 3.7 | 8,191, 5.2 | 0.74 | 180 / 139"),
            ("identity_python", 64, "7,096, 14.8 | 9,423, 11.5 | 0.75 | 149 / 112"),
            ("mlp_python", 16, "4,321, 5.7 | 5,945, 5.4 | 0.73 | 249 / 262"),
            ("mlp_python", 64, "5,381, 18.9 | 7,416, 21.2 | 0.73 | 189 / 191"),
        )
    ),
    Claim(
        BENCH,
        "0.73-0.75 of Triton, whose",
        "serve_vs_triton_http.json",
        "summary[*].headrace_over_triton",
    ),
    Row(
        BENCH,
        "(MLP c=16 5,945\nagainst 4,602 /s)",
        "serve_vs_triton_http.json",
        (None, "summary[model=mlp_python][concurrency=16].triton.throughput", None),
    ),
    Claim(
        BENCH,
        "against 4,602 /s)",
        "serve_vs_triton.json",
        "summary[model=mlp_python][protocol=http][concurrency=16].triton.throughput",
    ),
    Claim(
        BENCH,
        "process` measured 0.62-0.76x",
        "serve_ab_runtime_http.json",
        "summary[*].process_over_default",
    ),
    Claim(
        BENCH,
        "`--run-now-below-us 0` 0.76-0.94x",
        "serve_ab_runtime_http.json",
        "summary[*].threads_over_default",
    ),
    # serve_processes.json: one headrace process vs two (--reuse-port) vs Triton
    *(
        Claim(doc, text, _PROCESSES, f"summary[protocol={protocol}].headrace-2_over_headrace-1")
        for doc, text, protocol in (
            (BENCH, "unary gRPC 1.20-1.30x", "grpc"),
            (BENCH, "HTTP 0.83-1.13x", "http"),
            (BENCH, "streaming 0.95-1.02x", "grpc-stream"),
            (TOP, "served 1.20-1.30x", "grpc"),
            (TOP, "but 0.83-1.13x", "http"),
            (TOP, "0.95-1.02x over gRPC", "grpc-stream"),
        )
    ),
    Row(
        BENCH,
        "(identity c=16 2,751 → 3,301 /s, MLP c=16 1,916 → 2,489 /s",
        _PROCESSES,
        (
            None,
            f"{_PROC_ID_GRPC16}.headrace-1.throughput",
            f"{_PROC_ID_GRPC16}.headrace-2.throughput",
            None,
            "summary[model=mlp_python][protocol=grpc][concurrency=16].headrace-1.throughput",
            "summary[model=mlp_python][protocol=grpc][concurrency=16].headrace-2.throughput",
        ),
    ),
    Row(
        BENCH,
        "identity HTTP c=16 batches of 2.1 against 5.6, CPU\n233 against 159 µs",
        _PROCESSES,
        (
            None,
            f"{_PROC_ID_HTTP16}.headrace-2.avg_batch",
            f"{_PROC_ID_HTTP16}.headrace-1.avg_batch",
            f"{_PROC_ID_HTTP16}.headrace-2.server_cpu_us_per_inference",
            f"{_PROC_ID_HTTP16}.headrace-1.server_cpu_us_per_inference",
        ),
    ),
    Claim(
        BENCH,
        "0.35-0.41x over unary gRPC",
        _PROCESSES,
        "summary[model=identity_python][protocol=grpc].headrace-2_over_triton",
    ),
    Claim(
        BENCH,
        "0.68-0.81x over HTTP",
        _PROCESSES,
        "summary[model=identity_python][protocol=http].headrace-2_over_triton",
    ),
    Claim(
        BENCH,
        "0.76x over streaming",
        _PROCESSES,
        "summary[model=identity_python][protocol=grpc-stream][concurrency=16]"
        ".headrace-2_over_triton",
    ),
    # serve_vs_triton_stream.json: gRPC streaming, headrace vs Triton 2.51
    Claim(
        BENCH,
        "reaches 0.60-0.68 of Triton 2.51",
        "serve_vs_triton_stream.json",
        "summary[*].headrace_over_triton",
    ),
    Row(
        BENCH,
        "(identity c=16 5,383 against 8,094 /s; server CPU per\ninference 204 against 123 µs",
        "serve_vs_triton_stream.json",
        (
            None,
            "summary[model=identity_python][concurrency=16].headrace.throughput",
            "summary[model=identity_python][concurrency=16].triton.throughput",
            "summary[model=identity_python][concurrency=16].headrace.server_cpu_us_per_inference",
            "summary[model=identity_python][concurrency=16].triton.server_cpu_us_per_inference",
        ),
    ),
    # bench_load_vs_perf_analyzer_decoupled.json: a decoupled model, pinned
    Claim(
        BENCH,
        "measured 0.996-1.011x perf_analyzer's requests",
        _VS_PA_DECOUPLED,
        "summary.points[*].ratio",
    ),
    Claim(
        BENCH,
        "0.996-1.011x its responses",
        _VS_PA_DECOUPLED,
        "summary.points[*].response_ratio",
    ),
    Claim(TOP, "it measured 0.996-1.011x", _VS_PA_DECOUPLED, "summary.points[*].ratio"),
    Claim(TOP, "it measured 0.996-1.011x", _VS_PA_DECOUPLED, "summary.points[*].response_ratio"),
    Claim(BENCH, "0.999-1.014x its p50 latency", _VS_PA_DECOUPLED, _DECOUPLED_P50_RATIOS),
    Claim(TOP, "0.999-1.014x its p50 latency", _VS_PA_DECOUPLED, _DECOUPLED_P50_RATIOS),
    Row(
        BENCH,
        "(4,457 against 4,410 /s at c=1)",
        _VS_PA_DECOUPLED,
        (
            "summary.points[concurrency=1].headrace_response_throughput",
            "summary.points[concurrency=1].perf_analyzer_response_throughput",
            None,
        ),
    ),
    Row(
        BENCH,
        "(c=1: 588 against 581 µs)",
        _VS_PA_DECOUPLED,
        (
            None,
            "summary.points[concurrency=1].headrace_p50_us",
            "summary.points[concurrency=1].perf_analyzer_p50_us",
        ),
    ),
    # bench_load_vs_perf_analyzer.json: the same, unpinned
    Claim(BENCH, "ranged 0.863-1.177x", _VS_PA, "summary.points[*].ratio"),
    Claim(TOP, "it measured 0.863-1.177x", _VS_PA, "summary.points[*].ratio"),
    Claim(BENCH, "HTTP 0.949-1.177x", _VS_PA, "summary.points[protocol=http].ratio"),
    Claim(BENCH, "unary gRPC\n0.863-1.024x", _VS_PA, "summary.points[protocol=grpc].ratio"),
    Claim(
        BENCH, "gRPC streaming 0.898-1.041x", _VS_PA, "summary.points[protocol=grpc-stream].ratio"
    ),
    Claim(BENCH, "identity HTTP c=1 1.177x", _VS_PA, _pa("identity_bytes", "http", 1)),
    Claim(BENCH, "unary gRPC c=1 0.863x", _VS_PA, _pa("mlp", "grpc", 1)),
    Claim(BENCH, "MLP streaming c=16 0.898x", _VS_PA, _pa("mlp", "grpc-stream", 16)),
    Claim(BENCH, "MLP HTTP c=16 1.133x", _VS_PA, _pa("mlp", "http", 16)),
    Claim(
        BENCH,
        "1,277-1,295 and",
        _VS_PA,
        "records[model=mlp][protocol=grpc][concurrency=1][generator=headrace][round~=0,2,4]"
        ".throughput",
    ),
    Claim(
        BENCH,
        "and 1,496-1,497 /s",
        _VS_PA,
        "records[model=mlp][protocol=grpc][concurrency=1][generator=headrace][round~=1,3]"
        ".throughput",
    ),
    Row(
        BENCH,
        "1.041x and 0.976x in this run",
        _VS_PA,
        (_pa("identity_bytes", "grpc-stream", 1), _pa("mlp", "grpc-stream", 1)),
    ),
    # serve_ab_onnx_spinning.json: onnxruntime's pool sleeping when idle in the server
    Claim(BENCH, "the MLP served 1.03-1.21x", _SPIN, "summary[model=mlp_onnx].after_over_before"),
    Claim(
        TOP, "1.03-1.21x the requests served", _SPIN, "summary[model=mlp_onnx].after_over_before"
    ),
    Claim(
        TOP,
        "0.99x on a compute-bound model",
        _SPIN,
        "summary[model=compute_onnx].after_over_before",
    ),
    Claim(
        BENCH,
        "rounds 5,084-5,456",
        _SPIN,
        "records[model=mlp_onnx][protocol=http][concurrency=16][setting=after].throughput",
    ),
    Claim(
        BENCH,
        "against\n4,090-4,607 /s",
        _SPIN,
        "records[model=mlp_onnx][protocol=http][concurrency=16][setting=before].throughput",
    ),
    Row(
        BENCH,
        "server CPU per inference 404 → 224 µs",
        _SPIN,
        (
            "summary[model=mlp_onnx][protocol=http][concurrency=16].before"
            ".server_cpu_us_per_inference",
            "summary[model=mlp_onnx][protocol=http][concurrency=16].after"
            ".server_cpu_us_per_inference",
        ),
    ),
    Claim(
        BENCH,
        "the compute-bound model 0.99x",
        _SPIN,
        "summary[model=compute_onnx].after_over_before",
    ),
    Claim(
        BENCH,
        "each of the 3 rounds after, 642-656 /s",
        _SPIN,
        "records[model=compute_onnx][protocol=grpc][concurrency=16][setting=after].throughput",
    ),
    Claim(
        BENCH,
        "below each before, 662-696 /s",
        _SPIN,
        "records[model=compute_onnx][protocol=grpc][concurrency=16][setting=before].throughput",
    ),
    # bench_tune/*.json: headrace bench tune, the pick side by side with the model's config
    Row(
        TOP,
        "(2942.7 inferences/s at p99 8.04 ms, c=16, 215.1 CPU-seconds",
        _TUNE_FIXED,
        ("points[7].throughput", None, "points[7].p99_ms", None, "points[7].cost"),
    ),
    Row(
        TOP,
        "at c=16 (3580.7/s, p99 6.78 ms)",
        _TUNE_FIXED,
        (None, "points[15].throughput", None, "points[15].p99_ms"),
    ),
    Row(
        TOP,
        "2874.4 against 423.1 inferences/s at c=16 (6.79x; p99 7.47 against 39.87 ms)",
        _TUNE_FIXED,
        _side_by_side(
            16, ("throughput", "throughput_baseline", None, "gain", None, "p99", "p99_baseline")
        ),
    ),
    Row(
        TOP,
        "812.7 against 404.2 at c=4 (2.01x)",
        _TUNE_FIXED,
        _side_by_side(4, ("throughput", "throughput_baseline", None, "gain")),
    ),
    Row(
        TOP,
        "side by side 2167.9 against 1806.5 inferences/s\n  (1.20x, faster in 5 of 5 rounds; "
        "p99 0.70 against 0.74 ms)",
        _TUNE_MLP_C1,
        (
            *_side_by_side(1, ("throughput", "throughput_baseline", "gain")),
            "side_by_side[concurrency=1].rounds_won",
            None,
            *_side_by_side(1, (None, "p99", "p99_baseline")),
        ),
    ),
    Row(
        TOP,
        "measured 5871.5/s against the model's 5297.8 in the pass",
        _TUNE_MLP,
        ("points[15].throughput", "points[1].throughput"),
    ),
    Row(
        TOP,
        "5240.1 against 5189.1 (1.01x, medians of 3",
        _TUNE_MLP,
        (*_side_by_side(16, ("throughput", "throughput_baseline", "gain")), None),
    ),
    Row(
        TOP,
        "ran 2074.6 against 2101.7/s side by side at c=16 (0.99x)",
        _TUNE_PN,
        _side_by_side(16, ("throughput", "throughput_baseline", None, "gain")),
    ),
    Row(
        BENCH,
        "the pick gained 6.79x at c=16 and 2.01x at c=4",
        _TUNE_FIXED,
        (_gain(16), None, _gain(4), None),
    ),
    Claim(BENCH, "1.01x on the MLP", _TUNE_MLP, _gain(16)),
    Claim(BENCH, "delay) gained 1.02x", _TUNE_MLP_PLAIN, _gain(16)),
    Claim(
        BENCH, "(5,013.8 against", _TUNE_MLP_PLAIN, "side_by_side[concurrency=16].chosen.throughput"
    ),
    Claim(
        BENCH,
        "against 4,925.8/s",
        _TUNE_MLP_PLAIN,
        "side_by_side[concurrency=16].baseline.throughput",
    ),
    Claim(BENCH, "0.99x on ParticleNet", _TUNE_PN, _gain(16)),
    # reliability/soak.json: headrace serve under mixed traffic and reloads
    Row(
        BENCH,
        "| 35696 | 0 | 5 | 19 | 0 | 4.72 |",
        "reliability/soak.json",
        (
            "summary.requests_ok",
            "summary.errors_unexpected",
            "summary.errors_expected",
            "summary.reloads",
            "summary.reloads_failed",
            "summary.rss_server.growth_pct",
        ),
    ),
    Claim(
        BENCH,
        "p99 per minute: median 25.6-40.8 ms",
        "reliability/soak.json",
        "summary.p99_after_warmup[*].p99_ms_median",
    ),
    Claim(
        BENCH,
        "(worst minutes 81.9-116.8 ms)",
        "reliability/soak.json",
        "summary.p99_after_warmup[*].p99_ms_max",
    ),
    Claim(
        BENCH,
        "worst minute was 2.35-3.19x",
        "reliability/soak.json",
        "summary.p99_after_warmup[*].p99_max_over_median",
    ),
    # reliability/offline_kill.json: headrace run killed with SIGKILL and resumed
    Row(
        BENCH,
        "| 20 | 20 | 29 | 27 | 0 | 0 |",
        "reliability/offline_kill.json",
        tuple(
            f"summary.{key}"
            for key in (
                "runs",
                "runs_ok",
                "kills",
                "kills_mid_job",
                "rows_missing",
                "rows_duplicated",
            )
        ),
    ),
    # pipeline_cpu.json: the study with sleeping preprocessing
    _pipeline_row(
        "| 0 ms | 227.9 | 244.7 | 247.7 | 245.6 | 247.4 | 248.5 |", "pipeline_cpu.json", 0.0
    ),
    _pipeline_row(
        "| 2 ms | 152.6 | 248.8 | 249.3 | 249.6 | 164.7 | 250.9 |", "pipeline_cpu.json", 2.0
    ),
    _pipeline_row(
        "| 4 ms | 118.2 | 241.0 | 243.2 | 243.0 | 124.5 | 245.0 |", "pipeline_cpu.json", 4.0
    ),
    Claim(
        BENCH,
        "(2.06x sequential)",
        "pipeline_cpu.json",
        "results[cpu_delay_ms=4.0][num_buffers=3].speedup",
    ),
    # pipeline_cpu_spin.json: the same study with --preprocess spin
    _spin_row("| 0 ms | 167.2 | 174.2 | 174.5 | 171.3 | 174.2 | 175.2 | 5.7 / 5.8 |", 0.0),
    _spin_row("| 2 ms | 109.5 | 134.7 | 113.5 | 110.5 | 113.8 | 148.4 | 6.7 / 8.9 |", 2.0),
    _spin_row("| 4 ms | 76.9 | 97.0 | 96.8 | 87.2 | 80.0 | 118.4 | 8.4 / 11.4 |", 4.0),
    Row(
        BENCH,
        "gains 1.23x (2 ms, 2-way) and 1.26x (4 ms, 2-way) over sequential, at 91% and 82%",
        "pipeline_cpu_spin.json",
        (
            f"{_SPIN2}.speedup",
            None,
            None,
            f"{_SPIN4}.speedup",
            None,
            None,
            None,  # batches/s over the slowest-stage bound: 134.7 / 148.4, 97.0 / 118.4
            None,
        ),
    ),
    Row(
        BENCH,
        "(4-way at 4 ms: 1.13x)",
        "pipeline_cpu_spin.json",
        (None, None, "results[cpu_delay_ms=4.0][num_buffers=4].speedup"),
    ),
    Row(
        BENCH,
        "load average 1.5 / 2.0 / 2.0 over 1 / 5 / 15 minutes",
        "pipeline_cpu_spin.json",
        (*(f"machine.load_average[{i}]" for i in range(3)), None, None, None),
    ),
    # serve_overhead_quiet.json
    Row(
        BENCH,
        "| identity HTTP, headrace / Triton (p99 ms) | 0.83 (0.7 / 0.5) | 0.57 (5.3 / 3.6) | 0.51 (18.9 / 19.7) |",
        _QUIET,
        (None, *_vs_triton("identity_python", "http", (1, 16, 64), True)),
    ),
    Row(
        BENCH,
        "| MLP HTTP, headrace / Triton (p99 ms) | 0.82 (0.8 / 0.7) | 0.71 (7.2 / 9.3) | 0.59 (44.9 / 28.5) |",
        _QUIET,
        (None, *_vs_triton("mlp_python", "http", (1, 16, 64), True)),
    ),
    Row(
        BENCH,
        "| identity gRPC, headrace / Triton | 0.67 | 0.30 | 0.25 |",
        _QUIET,
        _vs_triton("identity_python", "grpc", (1, 16, 64), False),
    ),
    Row(
        BENCH,
        "| MLP gRPC, headrace / Triton | 0.69 | 0.25 | 0.24 |",
        _QUIET,
        _vs_triton("mlp_python", "grpc", (1, 16, 64), False),
    ),
    Claim(
        BENCH, "(all four rows) | 2.6-3.8", _QUIET, "summary[concurrency=1].headrace_over_pytriton"
    ),
    Claim(BENCH, "3.8 | 1.0-3.1 |", _QUIET, "summary[concurrency=16].headrace_over_pytriton"),
    Claim(BENCH, "3.1 | 0.7-2.0 |", _QUIET, "summary[concurrency=64].headrace_over_pytriton"),
    Claim(
        BENCH,
        "HTTP forms batches of 5-32",
        _QUIET,
        "summary[protocol=http][concurrency!=1].headrace.avg_batch",
    ),
    Claim(
        BENCH,
        "reaches 3.9-4.9k infer/s",
        _QUIET,
        "summary[protocol=http][concurrency!=1].headrace.throughput*0.001",
    ),
    Claim(
        BENCH,
        "gRPC stays at batches of 1.1-1.6",
        _QUIET,
        "summary[protocol=grpc][concurrency!=1].headrace.avg_batch",
    ),
    Claim(
        BENCH,
        "and 1.4-2.0k infer/s",
        _QUIET,
        "summary[protocol=grpc][concurrency!=1].headrace.throughput*0.001",
    ),
    Claim(
        BENCH,
        "before each load was 1.1-30.6",
        _QUIET,
        "records[load_avg_1m_before].load_avg_1m_before",
    ),
    Claim(
        BENCH,
        "was 7-19 in round 1",
        "serve_overhead_run1.json",
        "records[load_avg_1m_before][round=0].load_avg_1m_before",
    ),
    Claim(
        BENCH,
        "and 2-10 in round 2",
        "serve_overhead_run1.json",
        "records[load_avg_1m_before][round=1].load_avg_1m_before",
    ),
    Claim(
        BENCH,
        "(load average 1-17;",
        "serve_overhead_run2.json",
        "records[load_avg_1m_before].load_avg_1m_before",
    ),
    # serve_overhead_session2.json
    Row(
        BENCH,
        "| identity HTTP | 0.94 (0.6 / 0.5) | 0.73 (1.5 / 1.1) | 0.68 (5.1 / 8.3) | 0.74 (18.1 / 30.0) |",
        _SO2,
        _vs_triton("identity_python", "http", (1, 4, 16, 64), True),
    ),
    Row(
        BENCH,
        "| MLP HTTP | 0.82 (0.9 / 0.7) | 0.72 (2.2 / 3.0) | 0.76 (5.1 / 7.8) | 0.79 (18.0 / 29.8) |",
        _SO2,
        _vs_triton("mlp_python", "http", (1, 4, 16, 64), True),
    ),
    Row(
        BENCH,
        "| identity gRPC | 0.75 | 0.50 | 0.34 | 0.25 |",
        _SO2,
        _vs_triton("identity_python", "grpc", (1, 4, 16, 64), False),
    ),
    Row(
        BENCH,
        "| MLP gRPC | 0.79 | 0.55 | 0.40 | 0.34 |",
        _SO2,
        _vs_triton("mlp_python", "grpc", (1, 4, 16, 64), False),
    ),
    Row(
        BENCH,
        "| compute HTTP / gRPC | 1.00 / 1.02 | 0.96 / 1.02 | 1.16 / 1.03 | 0.93 / 0.71 |",
        _SO2,
        tuple(
            f"{_load('compute_python', p, c)}.headrace_over_triton"
            for c in (1, 4, 16, 64)
            for p in ("http", "grpc")
        ),
    ),
    Claim(
        BENCH,
        "from c=16 up, at 0.68-0.79 of its throughput",
        _SO2,
        f"{_LIGHT_HTTP}[concurrency~=16,64].headrace_over_triton",
    ),
    Row(
        BENCH,
        "c=16 says why: identity gRPC 520 µs (Triton 158), MLP gRPC 647 (305), identity HTTP 209 (181), MLP HTTP 257 (281)",
        _SO2,
        (
            None,
            *(
                f"{_load(m, p, 16)}.{s}.server_cpu_us_per_inference"
                for p in ("grpc", "http")
                for m in ("identity_python", "mlp_python")
                for s in ("headrace", "triton")
            ),
        ),
    ),
    Claim(
        BENCH,
        "stays at batch 1.0 and 2.3k",
        _SO2,
        "summary[model=identity_python][protocol=grpc][concurrency!=1].headrace.throughput*0.001",
    ),
    Claim(
        BENCH,
        "(MLP: batches of 2.0-4.1",
        _SO2,
        "summary[model=mlp_python][protocol=grpc][concurrency!=1].headrace.avg_batch",
    ),
    Claim(
        BENCH,
        "4.1, 1.5-1.9k infer/s)",
        _SO2,
        "summary[model=mlp_python][protocol=grpc][concurrency!=1].headrace.throughput*0.001",
    ),
    Claim(
        BENCH,
        "except over gRPC at c=64 (0.78-0.96)",
        _SO2,
        "summary[protocol=grpc][concurrency=64][model$=_python].headrace_over_pytriton",
    ),
    Claim(
        BENCH,
        "the compute model over gRPC at c=16 (0.99)",
        _SO2,
        f"{_load('compute_python', 'grpc', 16)}.headrace_over_pytriton",
    ),
    Claim(
        BENCH,
        "at the batch formed: c=16 0.69-1.08",
        _SO2,
        "summary[model^=compute][concurrency=16].headrace_over_direct",
    ),
    Claim(
        BENCH,
        "c=64 0.53-0.74 (target 0.9)",
        _SO2,
        "summary[model^=compute][concurrency=64].headrace_over_direct",
    ),
    Row(
        BENCH,
        "(c=16 0.69/0.72, c=64 0.53/0.63 over gRPC/HTTP)",
        _SO2,
        (
            None,
            *(f"{_load('compute_onnx', p, 16)}.headrace_over_direct" for p in ("grpc", "http")),
            None,
            *(f"{_load('compute_onnx', p, 64)}.headrace_over_direct" for p in ("grpc", "http")),
        ),
    ),
    # serve_overhead_probe.json
    _probe_row(
        "| identity HTTP c=16 | 0.95 | 4.7 / 8.7 | 157 / 189 |", "identity_python", "http", 16
    ),
    _probe_row(
        "| identity HTTP c=64 | 1.01 | 19.2 / 61.4 | 171 / 210 |", "identity_python", "http", 64
    ),
    _probe_row("| MLP HTTP c=16 | 0.67 | 9.2 / 9.5 | 327 / 338 |", "mlp_python", "http", 16),
    _probe_row("| MLP HTTP c=64 | 0.83 | 24.5 / 32.2 | 239 / 277 |", "mlp_python", "http", 64),
    _probe_grpc_row(
        "| identity gRPC c=16 / 64 | 0.35 / 0.35 | 21.5 / 8.7, 50.5 / 28.8 | 656 / 199, 599 / 189 |",
        "identity_python",
    ),
    _probe_grpc_row(
        "| MLP gRPC c=16 / 64 | 0.45 / 0.42 | 16.3 / 19.3, 91.5 / 38.8 | 666 / 399, 638 / 316 |",
        "mlp_python",
    ),
    # serve_overhead_compute_after_threads.json
    Claim(
        BENCH,
        "the same run) is 0.55-0.86 at c=64",
        _AFTER,
        "summary[concurrency=64].headrace_over_direct",
    ),
    Claim(
        BENCH,
        "(target 0.9) and 0.58-1.49 at c=16",
        _AFTER,
        "summary[concurrency=16].headrace_over_direct",
    ),
    Row(
        BENCH,
        "(c=64 0.55/0.70, c=16 0.58/0.63 over gRPC/HTTP)",
        _AFTER,
        (
            None,
            *(f"{_load('compute_onnx', p, 64)}.headrace_over_direct" for p in ("grpc", "http")),
            None,
            *(f"{_load('compute_onnx', p, 16)}.headrace_over_direct" for p in ("grpc", "http")),
        ),
    ),
    Row(
        BENCH,
        "(gRPC 1024, HTTP 1302 infer/s)",
        _AFTER,
        tuple(f"{_load('compute_onnx', p, 64)}.headrace.throughput" for p in ("grpc", "http")),
    ),
    Row(
        BENCH,
        "higher than run 1's (503, 695)",
        "serve_overhead_run1.json",
        (None, *(f"{_load('compute_onnx', p, 64)}.headrace.throughput" for p in ("grpc", "http"))),
    ),
    # serve_ab_*.json
    Claim(
        BENCH,
        "gave 0.91-1.15 of the default's throughput",
        "serve_ab_omp_wait.json",
        "summary[*].passive_over_default",
    ),
    Row(
        BENCH,
        "(MLP python 1.00/0.99, MLP TorchScript 0.93/1.15, compute python 1.03/1.10, compute TorchScript 0.91/0.91 at c=16/64)",
        "serve_ab_omp_wait.json",
        (
            *(
                f"summary[model={m}][concurrency={c}].passive_over_default"
                for m in ("mlp_python", "mlp_torchscript", "compute_python", "compute_torchscript")
                for c in (16, 64)
            ),
            None,
            None,
        ),
    ),
    Claim(
        BENCH,
        "gave 0.72-1.01 of its throughput over the 16 loads",
        "serve_ab_run_now.json",
        "summary[*].t100_over_default",
    ),
    Claim(
        BENCH,
        "16 loads: 0.72-0.93 on the identity models",
        "serve_ab_run_now.json",
        "summary[model^=identity].t100_over_default",
    ),
    Row(
        BENCH,
        "(python: HTTP 0.92/0.81, gRPC 0.93/0.88 at c=16/64)",
        "serve_ab_run_now.json",
        (
            *(
                f"{_load('identity_python', p, c)}.t100_over_default"
                for p in ("http", "grpc")
                for c in (16, 64)
            ),
            None,
            None,
        ),
    ),
    Claim(
        BENCH,
        "and 0.82-1.01 on the MLPs",
        "serve_ab_run_now.json",
        "summary[model^=mlp].t100_over_default",
    ),
    Claim(
        BENCH,
        "1.12-1.16 on MLP TorchScript",
        "serve_ab_run_now.json",
        "summary[model=mlp_torchscript].omp1_over_default",
    ),
    Claim(
        BENCH,
        "gave 0.62-0.83 on the identity models",
        "serve_ab_run_now.json",
        "summary[model^=identity].omp1_over_default",
    ),
    Claim(
        BENCH,
        "0.74-1.02 on MLP python",
        "serve_ab_run_now.json",
        "summary[model=mlp_python].omp1_over_default",
    ),
    Row(
        BENCH,
        "(the 1.02 at gRPC c=64)",
        "serve_ab_run_now.json",
        (f"{_load('mlp_python', 'grpc', 64)}.omp1_over_default", None),
    ),
    Claim(
        BENCH,
        "3 rounds | 0.85-1.13;",
        "serve_ab_engine_contract_first_pass.json",
        "summary[*].after_over_before",
    ),
    Claim(
        BENCH,
        "identity models 0.94-0.97 on all 6 loads",
        "serve_ab_engine_contract_first_pass.json",
        "summary[model^=identity].after_over_before",
    ),
    Claim(
        BENCH,
        "| the same | 0.90-1.10 |",
        "serve_ab_engine_contract.json",
        "summary[*].after_over_before",
    ),
    Row(
        BENCH,
        "| 0.98 (python), 1.03 (ONNX) |",
        "serve_ab_engine_contract_identity_c1.json",
        (
            "summary[model=identity_python].after_over_before",
            "summary[model=identity_onnx].after_over_before",
        ),
    ),
    Claim(
        BENCH,
        "| 0.88-1.07 (HTTP",
        "serve_ab_engine_contract_http_stream.json",
        "summary[*].after_over_before",
    ),
    Claim(
        BENCH,
        "(HTTP 0.95-1.07;",
        "serve_ab_engine_contract_http_stream.json",
        "summary[protocol=http].after_over_before",
    ),
    Claim(
        BENCH,
        "streaming 0.88-1.02)",
        "serve_ab_engine_contract_http_stream.json",
        "summary[protocol=grpc-stream].after_over_before",
    ),
    Claim(
        BENCH,
        "4 rounds | 1.01-1.04 |",
        "serve_ab_engine_contract_stream.json",
        "summary[*].after_over_before",
    ),
    Row(
        BENCH,
        "at c=1 the low rows (0.90/0.91)",
        "serve_ab_engine_contract.json",
        (
            None,
            *(
                f"{_load(m, 'grpc', 1)}.after_over_before"
                for m in ("identity_python", "identity_onnx")
            ),
        ),
    ),
    Claim(
        BENCH,
        "Streaming lost 0.88-0.96 on the MLPs",
        "serve_ab_engine_contract_http_stream.json",
        "summary[protocol=grpc-stream][model^=mlp].after_over_before",
    ),
    Claim(
        BENCH,
        "with one queue it is 1.01-1.04",
        "serve_ab_engine_contract_stream.json",
        "summary[*].after_over_before",
    ),
    # streaming.json
    Claim(
        BENCH,
        "| 0.51 [0.44-0.58], 1.66 |",
        "streaming.json",
        f"{_CLOSED}[streams=1].headrace_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 1.07 [0.92-1.21], 0.93 |",
        "streaming.json",
        f"{_CLOSED}[streams=1].headrace-in-server_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 1.38 [1.32-1.55], 0.62 |",
        "streaming.json",
        f"{_CLOSED}[streams=1].headrace-onnx_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        "| 0.56 [0.51-0.65], 1.70 |",
        "streaming.json",
        f"{_CLOSED}[streams=4].headrace_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 0.74 [0.67-0.81], 1.24 |",
        "streaming.json",
        f"{_CLOSED}[streams=4].headrace-in-server_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 1.18 [1.12-1.52], 0.80 |",
        "streaming.json",
        f"{_CLOSED}[streams=4].headrace-onnx_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        "| 0.60 [0.53-0.68], 1.65 |",
        "streaming.json",
        f"{_CLOSED}[streams=8].headrace_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 0.75 [0.73-0.78], 1.39 |",
        "streaming.json",
        f"{_CLOSED}[streams=8].headrace-in-server_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        " 1.02 [0.97-1.20], 0.83 |",
        "streaming.json",
        f"{_CLOSED}[streams=8].headrace-onnx_over_triton.updates_per_s_by_round[*]",
    ),
    Claim(
        BENCH,
        "takes 1.02-1.38x Triton's updates",
        "streaming.json",
        f"{_CLOSED}.headrace-onnx_over_triton.updates_per_s",
    ),
    Row(
        BENCH,
        "(0.74x at k=4, 0.75x at k=8)",
        "streaming.json",
        (
            f"{_CLOSED}[streams=4].headrace-in-server_over_triton.updates_per_s",
            None,
            f"{_CLOSED}[streams=8].headrace-in-server_over_triton.updates_per_s",
            None,
        ),
    ),
    Claim(
        BENCH,
        "it loses everywhere (0.51-0.60x)",
        "streaming.json",
        f"{_CLOSED}.headrace_over_triton.updates_per_s",
    ),
    Claim(
        BENCH,
        "lower p99 in\nevery load (0.60-0.83x the median p99",
        "streaming.json",
        "summary[*].headrace-onnx_over_triton.p99",
    ),
    Claim(
        BENCH,
        "round by round 0.555-0.923x)",
        "streaming.json",
        "summary[*].headrace-onnx_over_triton.p99_by_round[*]",
    ),
    # shared_memory.json
    Claim(
        BENCH,
        "Met with the data in place: 12.6-18.6x in every round",
        "shared_memory.json",
        f"{_SHM}.socket_over_this_rounds[*]",
    ),
    Claim(
        TOP,
        "(12.6-18.6x over HTTP and gRPC, every round",
        "shared_memory.json",
        f"{_SHM}.socket_over_this_rounds[*]",
    ),
    Claim(
        TOP, "shared memory takes 4.2-5.2 ms", "shared_memory.json", f"{_SHM}.round_medians_ms[*]"
    ),
    Claim(
        TOP,
        "where the socket takes 53-93 ms",
        "shared_memory.json",
        "summary[system=headrace][path=socket].round_medians_ms[*]",
    ),
    Claim(
        BENCH,
        "lands at 4.9-9.1x",
        "shared_memory.json",
        "summary[system=headrace][path=shm+copy].socket_over_this_rounds[*]",
    ),
    Claim(
        BENCH,
        "takes 10-13 ms for the in-place path",
        "shared_memory.json",
        "summary[system=triton][path=shm].round_medians_ms[*]",
    ),
    # response_cache.json
    _cache_row(
        "| headrace | 1 | 154, 6.0 / 11.9 | 987, 0.98 / 1.6 | 6.4 [5.1-7.2] |", "headrace", 1
    ),
    _cache_row(
        "| headrace | 4 | 150, 24.5 / 51.6 | 1,535, 2.5 / 4.6 | 10.2 [7.4-10.2] |", "headrace", 4
    ),
    _cache_row(
        "| triton | 1 | 141, 6.6 / 11.4 | 1,301, 0.72 / 1.3 | 9.2 [8.4-10.4] |", "triton", 1
    ),
    _cache_row(
        "| triton | 4 | 130, 29.9 / 40.4 | 1,983, 1.9 / 4.5 | 15.3 [13.0-17.9] |", "triton", 4
    ),
    # gc_pause.json
    Claim(BENCH, "71.9-77.4 ms over 5 runs", "gc_pause.json", "collect_ms.2[*]"),
    Claim(
        BENCH,
        "0.000-0.004 ms once they are frozen",
        "gc_pause.json",
        "full_collect_after_freeze_ms[*]",
    ),
    # frontend_ceiling.json
    Claim(
        BENCH,
        "| gRPC bare grpc-aio | 3,390 |",
        "frontend_ceiling.json",
        "results.grpc bare grpc-aio.median_throughput",
    ),
    Claim(
        BENCH,
        "| gRPC bare grpc-sync | 3,221 |",
        "frontend_ceiling.json",
        "results.grpc bare grpc-sync.median_throughput",
    ),
    Claim(
        BENCH,
        "| gRPC headrace (full path, in-server) | 2,483 |",
        "frontend_ceiling.json",
        "results.grpc headrace (full path, in-server).median_throughput",
    ),
    Claim(
        BENCH,
        "| gRPC headrace (full path, process) | 1,836 |",
        "frontend_ceiling.json",
        "results.grpc headrace (full path, process).median_throughput",
    ),
    # offline.json
    _offline_row(
        "| naive (reload per batch of 4) | 3,855 (4,008 / 3,806 / 3,855) | 0.010 |",
        "naive",
        labels=1,
    ),
    _offline_row(
        "| plain loop (ceiling) | 405,637 (405,637 / 427,085 / 401,738) | 1.000 |", "plain"
    ),
    _offline_row(
        "| headrace run (local) | 415,566 (422,534 / 415,211 / 415,566) | 1.024 |", "local"
    ),
    _offline_row(
        "| headrace run --ray | 127,020 (132,382 / 120,434 / 127,020) | 0.313 |", "ray_runner"
    ),
    _offline_row(
        "| Ray Data map_batches | 105,925 (105,597 / 105,925 / 107,899) | 0.261 |", "ray_data"
    ),
    # http_stack.json
    Claim(
        BENCH,
        "1-minute load average 12.7-19.3 before its loads",
        "http_stack.json",
        "runs[*].load_avg_1m_before",
    ),
    _stack_row("| aiohttp | 713 (1.00), 0.26 | 2,315 (1.00), 5.4 |", "aiohttp"),
    _stack_row("| starlette | 795 (1.11), 0.24 | 2,063 (0.89), 5.4 |", "starlette"),
    _stack_row("| asgi | 808 (1.13), 0.19 | 2,341 (1.01), 5.7 |", "asgi"),
    _stack_row("| headrace | 386 (0.54), 1.44 | 863 (0.37), 16.6 |", "headrace"),
    Claim(
        BENCH,
        "(bare ASGI 1.01-1.13x",
        "http_stack.json",
        "summary[stack=asgi].throughput_vs_aiohttp",
    ),
    Claim(
        BENCH,
        "Starlette 0.89-1.11x its requests",
        "http_stack.json",
        "summary[stack=starlette].throughput_vs_aiohttp",
    ),
    Claim(
        BENCH,
        "rounds spanned 538-843 infer/s at c=1",
        "http_stack.json",
        "runs[stack=aiohttp][concurrency=1].throughput",
    ),
    Claim(
        BENCH,
        "core reached 0.37-0.54x bare aiohttp",
        "http_stack.json",
        "summary[stack=headrace].throughput_vs_aiohttp",
    ),
    Row(
        BENCH,
        "load average 4.2 / 6.0 / 7.7 over 1 / 5 / 15 minutes",
        "pipeline_scaleout_cpu.json",
        (*(f"machine.load_average[{i}]" for i in range(3)), None, None, None),
    ),
    Claim(
        BENCH,
        "answers at once reaches 3.4k RPC/s",
        "frontend_ceiling.json",
        "results.grpc headrace x1.median_throughput*0.001",
    ),
    Row(
        BENCH,
        "`results/offline_after_reader_fix.json` repeats plain/local/Ray Data (1.04x, 4.2x)",
        "offline_after_reader_fix.json",
        ("systems.local.ratio_vs_plain", None),  # 4.2x: local over Ray Data, by hand
    ),
    # pipeline_scaleout_cpu.json
    _scaleout_row("| 0 ms | 1 | 1 | 23.7 | 23.8 | 100 % |", 0.0, 1, 1),
    _scaleout_row("| 0 ms | 1 | 3 | 21.1 | 21.5 | 100 % |", 0.0, 1, 3),
    _scaleout_row("| 0 ms | 2 | 1 | 26.0 | 13.0 / 13.7 | 55 % |", 0.0, 2, 1),
    _scaleout_row("| 0 ms | 2 | 3 | 29.7 | 14.9 / 15.0 | 70 % |", 0.0, 2, 3),
    _scaleout_row("| 5 ms | 1 | 1 | 24.3 | 24.4 | 100 % |", 5.0, 1, 1),
    _scaleout_row("| 5 ms | 1 | 3 | 27.7 | 27.8 | 100 % |", 5.0, 1, 3),
    _scaleout_row("| 5 ms | 2 | 1 | 29.9 | 15.0 / 15.0 | 62 % |", 5.0, 2, 1),
    _scaleout_row("| 5 ms | 2 | 3 | 33.3 | 16.8 / 16.7 | 60 % |", 5.0, 2, 3),
    # reliability/overload.json and faults.json
    Claim(BENCH, "| headrace | 89.6-90.5%", _OVER, "records[system=headrace].refused_fraction*100"),
    Claim(BENCH, "2.4 / 8.2-491.1 |", _OVER, "records[system=headrace].refused_p99_ms"),
    Claim(
        BENCH, "| 80.0-99.4% |", _OVER, "records[system=headrace].refused_under_10ms_fraction*100"
    ),
    Claim(BENCH, "| 23.0-25.3 |", _OVER, "records[system=headrace].answered_per_s"),
    Claim(BENCH, "| 1.7-2.4 |", _OVER, "records[system=headrace].rss_growth_mb"),
    Claim(BENCH, "| triton | 97.5-97.8%", _OVER, "records[system=triton].refused_fraction*100"),
    Claim(BENCH, "1.2 / 7.9-95.6 |", _OVER, "records[system=triton].refused_p99_ms"),
    Claim(BENCH, "| 3.5-4.0 |", _OVER, "records[system=triton].answered_per_s"),
    Claim(
        BENCH,
        "| headrace | 89.5-89.6%",
        _OVER_QUIET,
        "records[system=headrace].refused_fraction*100",
    ),
    Claim(BENCH, "/ 2.42-3.07 |", _OVER_QUIET, "records[system=headrace].refused_p99_ms"),
    Claim(BENCH, "| 25.40-25.52 |", _OVER_QUIET, "records[system=headrace].answered_per_s"),
    Claim(BENCH, "| 4.38-12.89 |", _OVER_QUIET, "records[system=triton].answered_per_s"),
    Claim(BENCH, "/ 1.87-2.31 |", _OVER_QUIET, "records[system=triton].refused_p99_ms"),
    Claim(BENCH, "error in 0.56-4.07 ms", _FAULTS, "records[*].faults.raise[*].ms"),
    Claim(BENCH, "after 501.84-502.26 ms", _FAULTS, "records[*].faults.hang.ms"),
    Claim(BENCH, "after 202.25-205.89 ms", _FAULTS, "records[*].faults.behind_hang[*].ms"),
    Claim(BENCH, "exit code after 8.43-12.04 ms", _FAULTS, "records[*].faults.die.ms"),
    Claim(BENCH, "again 0.374-0.383 s later", _FAULTS, "records[*].faults.die_recovery_s"),
    Claim(BENCH, "(p99 47.9-63.83 ms)", _FAULTS, "records[*].faults.steady.p99_ms"),
    Claim(BENCH, "drained in 2.84 s", _FAULTS, "records[*].drain.drain_s"),
    Claim(
        BENCH, "SIGTERM: 222 requests in flight", _FAULTS, "records[*].drain.in_flight_at_signal"
    ),
    Claim(BENCH, "755 answered", _FAULTS, "summary.drain_answered"),
    Claim(BENCH, "and 845 refused", _FAULTS, "summary.drain_refused"),
    # reliability/soak_quiet.json: the soak under the exclusive lock, after the keep-alive fix
    Claim(
        BENCH, "lock, after the keep-alive fix below): 36,000", _SOAK_QUIET, "summary.requests_ok"
    ),
    Claim(BENCH, "answers, 19 reloads", _SOAK_QUIET, "summary.reloads"),
    Claim(BENCH, "RSS +0.44% after", _SOAK_QUIET, "summary.rss_server.growth_pct"),
    Claim(BENCH, "(331.2 to", _SOAK_QUIET, "summary.rss_server.after_warmup_mib"),
    Claim(BENCH, "to 332.7 MiB", _SOAK_QUIET, "summary.rss_server.last_minute_mib"),
    Claim(
        BENCH,
        "median 3.64-5.01 ms per client",
        _SOAK_QUIET,
        "summary.p99_after_warmup[*].p99_ms_median",
    ),
    Claim(
        BENCH,
        "worst minutes 4.2-5.51 ms",
        _SOAK_QUIET,
        "summary.p99_after_warmup[*].p99_ms_max",
    ),
    Claim(
        BENCH,
        "at most 1.1-1.17x its median",
        _SOAK_QUIET,
        "summary.p99_after_warmup[*].p99_max_over_median",
    ),
    # doors_after_hardening.json: the tree before the slow-client and drain work vs after
    Claim(BENCH, "| http | 5,328-5,853 |", _DOORS, _DOORS_AB.format(s="before", p="http")),
    Claim(BENCH, "5,853 | 5,205-5,655 |", _DOORS, _DOORS_AB.format(s="after", p="http")),
    Claim(BENCH, "| grpc | 2,587-2,735 |", _DOORS, _DOORS_AB.format(s="before", p="grpc")),
    Claim(BENCH, "2,735 | 2,459-2,649 |", _DOORS, _DOORS_AB.format(s="after", p="grpc")),
    # stream_backlog_sse_*.json: SSE pacing on granian, before and after
    Claim(BENCH, "| 15,198-20,824 |", _SSE_SMALL, "records[tree=before].rate"),
    Claim(BENCH, "20,824 | 15,118-22,898 |", _SSE_SMALL, "records[tree=after].rate"),
    Claim(BENCH, "| 4,611-7,890 |", _SSE_LARGE, "records[tree=before].rate"),
    Claim(BENCH, "7,890 | 4,288-7,596 |", _SSE_LARGE, "records[tree=after].rate"),
    # serve_scaleout.json: headrace serve --ray-address, 1 -> 3 nodes; a Ray actor vs local
    Claim(BENCH, "| 3 | 462.3-463.7 |", _SCALE, "records[part=scaleout][nodes=3].throughput"),
    Claim(BENCH, "| 154.1-154.6 |", _SCALE, "records[part=scaleout][nodes=3].throughput*0.333333"),
    Claim(BENCH, "| 708-772 µs |", _SCALE, _SCALE_CPU.format(nodes=1)),
    Claim(BENCH, "| 658-692 µs |", _SCALE, _SCALE_CPU.format(nodes=2)),
    Claim(BENCH, "| 551-663 µs |", _SCALE, _SCALE_CPU.format(nodes=3)),
    Claim(
        BENCH,
        "spends 551-772 µs of CPU",
        _SCALE,
        "records[part=scaleout].frontend_cpu_us_per_inference",
    ),
    Claim(BENCH, "c=1 | 279.8-320.0", _SCALE, _SCALE_OVER.format(s="ray", c=1, k="throughput")),
    Claim(BENCH, "| 2,951-3,436 µs", _SCALE, _SCALE_OVER.format(s="ray", c=1, k="p50_us")),
    Claim(BENCH, "| 1,572-1,605 µs", _SCALE, _SCALE_OVER.format(s="ray", c=1, k=_FE)),
    Claim(BENCH, "| 1,319.8-1,383.8", _SCALE, _SCALE_OVER.format(s="local", c=1, k="throughput")),
    Claim(BENCH, "| 693-709 µs", _SCALE, _SCALE_OVER.format(s="local", c=1, k="p50_us")),
    Claim(BENCH, "| 490-512 µs", _SCALE, _SCALE_OVER.format(s="local", c=1, k=_FE)),
    Claim(BENCH, "| 1,191.2-1,312.5", _SCALE, _SCALE_OVER.format(s="ray", c=16, k="throughput")),
    Claim(
        BENCH, "| 11.7-12.9 ms", _SCALE, _SCALE_OVER.format(s="ray", c=16, k="p50_us") + "*0.001"
    ),
    Claim(BENCH, "| 647-708 µs", _SCALE, _SCALE_OVER.format(s="ray", c=16, k=_FE)),
    Claim(BENCH, "| 1,964.5-2,224.5", _SCALE, _SCALE_OVER.format(s="local", c=16, k="throughput")),
    Claim(
        BENCH, "| 6.9-7.0 ms", _SCALE, _SCALE_OVER.format(s="local", c=16, k="p50_us") + "*0.001"
    ),
    Claim(BENCH, "| 470-485 µs", _SCALE, _SCALE_OVER.format(s="local", c=16, k=_FE)),
    Claim(
        BENCH,
        "served 0.21-0.23 of the",
        _SCALE,
        _SCALE_ROUNDS.format(c=1, k="ray_over_local_throughput"),
    ),
    Claim(
        BENCH,
        "(+2.3-2.7 ms at",
        _SCALE,
        _SCALE_ROUNDS.format(c=1, k="ray_minus_local_p50_us") + "*0.001",
    ),
    Claim(
        BENCH,
        "and 0.54-0.67 at c=16",
        _SCALE,
        _SCALE_ROUNDS.format(c=16, k="ray_over_local_throughput"),
    ),
    Claim(
        BENCH, "took 1,630-1,735 µs wall", _SCALE, "records[part=bare_ray_call].wall_us_per_call"
    ),
    Claim(
        BENCH,
        "and 734-772 µs of the caller's",
        _SCALE,
        "records[part=bare_ray_call].caller_cpu_us_per_call",
    ),
)


def main(argv: list[str] | None = None) -> int:
    failures = 0
    for claim in CLAIMS:
        problems = check(claim)
        failures += bool(problems)
        status = "FAIL" if problems else "ok"
        print(f"{status:4s} {claim.doc}: {_normal(claim.text)[:90]}")
        for problem in problems:
            print(f"     {problem}")
    print(f"{len(CLAIMS) - failures}/{len(CLAIMS)} claims match their result files")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
