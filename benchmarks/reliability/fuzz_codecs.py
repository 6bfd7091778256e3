"""Coverage-guided fuzzing of the wire codecs with atheris (libFuzzer for Python), time-bounded.

    pip install atheris                                   # not a headrace dependency
    python benchmarks/reliability/fuzz_codecs.py          # 60 s per target
    python benchmarks/reliability/fuzz_codecs.py --seconds 10 --target grpc

Each target runs in its own child process under ``atheris.Fuzz`` with headrace's modules
instrumented for coverage, starting from a corpus of valid requests built here (tritonclient's
own encodings). A target's contract:

- ``http``: the HTTP codec (``decode_infer_request`` with or without
  Inference-Header-Content-Length, gzip/deflate inflation, raw binary bodies against any
  single-input spec), request validation, and response encoding of what was decoded. Only
  :class:`~headrace.errors.HeadraceError` may come out.
- ``grpc``: ``InferRequestDecoder.decode`` on any bytes, twice (the second through its memo of
  request headers), which must agree with the full decoding; then response encoding. Only
  ``HeadraceError`` may come out; a disagreement is a crash.
- ``bytes``: ``deserialize_bytes_tensor`` on any buffer and shape: only ``ValueError``.

Anything else is a crash: libFuzzer stops the target and writes the input, and this script
records it. Output: a table and ``results/reliability/fuzz.json`` (machine, runs, coverage,
corpus size, crashes per target). Without atheris it says so and exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results" / "reliability" / "fuzz.json"
TARGETS = ("http", "grpc", "bytes")
MAX_LEN = 4096
"""The longest input libFuzzer makes (bytes); requests past it add length, not new paths."""


# --- the targets, run in the child ------------------------------------------------------------


def _http_target() -> Any:
    import numpy as np

    from headrace.errors import HeadraceError
    from headrace.server.http.body import decompress
    from headrace.server.http.codec import (
        decode_infer_request,
        decode_raw_request,
        encode_infer_response,
    )
    from headrace.server.validation import Signature, validate_request
    from headrace.types import DataType, InferenceResponse, TensorSpec

    types = list(DataType)
    signature = Signature.build(
        "m",
        [TensorSpec("x", DataType.FP32, (4,)), TensorSpec("IN", DataType.BYTES, (-1,), True)],
        [TensorSpec("y", DataType.FP32, (4,))],
        max_batch_size=8,
    )

    def one(data: bytes) -> None:
        if len(data) < 3:
            return
        mode, knob, body = data[0] % 4, int.from_bytes(data[1:3], "little"), data[3:]
        try:
            if mode == 3:
                dims = tuple((b % 6) - 1 for b in body[:2][: knob % 3])
                spec = TensorSpec("x", types[knob % len(types)], dims)
                decoded = decode_raw_request("m", "", body[2:], spec, bool(knob & 0x100))
            else:
                if mode == 2:
                    body = decompress(body, "gzip" if knob & 1 else "deflate", 1 << 16)
                length = None if mode != 1 else knob % (len(body) + 2)
                decoded = decode_infer_request("m", "", body, length)
            request = decoded.request
            try:
                validate_request(request, signature)
            except HeadraceError:
                pass
            outputs = {name: np.asarray(array) for name, array in request.inputs.items()}
            encode_infer_response(InferenceResponse("m", "1", outputs, id=request.id), decoded)
        except HeadraceError:
            pass

    return one


def _grpc_target() -> Any:
    from headrace.errors import HeadraceError
    from headrace.server.grpc.codec import (
        decode_infer_request,
        encode_infer_response,
        split_infer_request,
    )
    from headrace.server.grpc.decoder import InferRequestDecoder
    from headrace.types import InferenceResponse

    decoder = InferRequestDecoder(None, capacity=64)

    def outcome(decode: Any) -> tuple[str, str]:
        try:
            request = decode()
        except HeadraceError as exc:
            return "refused", exc.message
        inputs = {k: (v.dtype.str, v.shape, v.tolist()) for k, v in request.inputs.items()}
        return "decoded", repr((request.with_inputs({}), inputs))

    def one(data: bytes) -> None:
        full = outcome(lambda: decode_infer_request(*split_infer_request(data)))
        for _ in range(2):  # the second call replays the header's memo, if it was kept
            fast = outcome(lambda: decoder.decode(data))
            if fast != full:
                raise AssertionError(f"the decoder's memo disagrees: {fast!r} != {full!r}")
        if full[0] == "decoded":
            request = decoder.decode(data)
            response = InferenceResponse("m", "1", dict(request.inputs), id=request.id)
            try:
                encode_infer_response(response)
            except HeadraceError:
                pass

    return one


def _bytes_target() -> Any:
    from headrace.types import deserialize_bytes_tensor

    def one(data: bytes) -> None:
        if not data:
            return
        rank = data[0] % 4
        shape = tuple(data[1 : 1 + rank])
        try:
            deserialize_bytes_tensor(data[1 + rank :], shape if data[0] & 0x80 else None)
        except ValueError:
            pass

    return one


def _child(target: str, seconds: int, corpus: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["headrace"]):
        one = {"http": _http_target, "grpc": _grpc_target, "bytes": _bytes_target}[target]()

    def test_one_input(data: bytes) -> None:
        one(bytes(data))

    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        "-print_final_stats=1",
        f"-artifact_prefix={corpus.parent}/",
        str(corpus),
    ]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


# --- seeds and the parent ---------------------------------------------------------------------


def _seeds(target: str) -> list[bytes]:
    """Valid inputs for ``target``, built with tritonclient's own request encoders."""
    import gzip
    import zlib

    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.grpc import service_pb2

    from headrace.types import serialize_bytes_tensor

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    words = np.array([[b"ab"], [b""]], dtype=np.object_)
    if target == "bytes":
        return [bytes([0x82, 2, 1]) + serialize_bytes_tensor(words), b"\x00\x01\x00\x00\x00z"]
    if target == "grpc":
        message = service_pb2.ModelInferRequest(model_name="m", id="r1")
        message.inputs.add(name="x", datatype="FP32", shape=[2, 4])
        message.inputs.add(name="IN", datatype="BYTES", shape=[2, 1])
        message.raw_input_contents.extend([x.tobytes(), serialize_bytes_tensor(words)])
        message.outputs.add(name="y")
        message.parameters["priority"].int64_param = 1
        typed = service_pb2.ModelInferRequest(model_name="m")
        typed.inputs.add(name="x", datatype="INT32", shape=[3]).contents.int_contents.extend(
            [1, 2, 3]
        )
        return [message.SerializeToString(), typed.SerializeToString()]
    seeds = []
    for binary in (False, True):
        tensors = [httpclient.InferInput("x", [2, 4], "FP32")]
        tensors[0].set_data_from_numpy(x, binary_data=binary)
        tensors.append(httpclient.InferInput("IN", [2, 1], "BYTES"))
        tensors[1].set_data_from_numpy(words, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
        body, length = httpclient.InferenceServerClient.generate_request_body(
            tensors, outputs=outputs, request_id="r1", parameters={"tag": "a"}
        )
        knob = (length or 0).to_bytes(2, "little")
        seeds.append(bytes([1 if length else 0]) + knob + body)
        seeds.append(bytes([2]) + b"\x01\x00" + gzip.compress(body))
        seeds.append(bytes([2]) + b"\x00\x00" + zlib.compress(body))
    seeds.append(bytes([3, 5, 1, 1, 2]) + x.tobytes())
    return seeds


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def _run_target(target: str, seconds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        seeds = _seeds(target)
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(seed)
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, __file__, "--child", target, "--seconds", str(seconds), str(corpus)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        log = child.stdout + child.stderr
        crashes = []
        for artifact in sorted(Path(tmp).glob("crash-*")) + sorted(Path(tmp).glob("timeout-*")):
            data = artifact.read_bytes()
            crashes.append({"artifact": artifact.name, "input_hex": data[:512].hex()})
        if crashes:
            tail = log[log.find("=== Uncaught Python exception") :][:3000]
            crashes[0]["traceback"] = tail
        done = _DONE.search(log)
        stats = _STAT.findall(log)
        last = stats[-1] if stats else ("0", "0", "0", "0")
        return {
            "target": target,
            "seconds": round(time.monotonic() - started, 1),
            "runs": int(done.group(1)) if done else int(last[0]),
            "coverage_edges": int(last[1]),
            "features": int(last[2]),
            "corpus": int(last[3]),
            "seeds": len(seeds),
            "exit_code": child.returncode,
            "crashes": crashes,
        }


FOUND_AND_FIXED = [
    {
        "found_by": "hypothesis (tests/server/test_grpc_fuzz.py strategy, 500 examples)",
        "input": "ModelInferRequest input shape [0, 2**62] FP32 with an empty raw content",
        "was": "ValueError 'array is too big' from numpy's reshape, answered INTERNAL",
        "fix": "server/shapes.py check_shape: INVALID_ARGUMENT / 400 in both codecs",
        "test": "test_empty_shapes_numpy_cannot_describe_are_refused (grpc and http codec tests)",
    },
    {
        "found_by": "side-by-side probe with Triton 2.51 (JSON nested 1000 deep)",
        "input": '{"inputs": [[[...1000 levels...]]]}, also in id, shape, outputs, index body',
        "was": "RecursionError in an error message's repr(), answered 500",
        "fix": "errors.brief (bounded reprlib) in every message quoting a client value",
        "test": "test_deeply_nested_json_is_refused_not_a_recursion_error, "
        "test_deeply_nested_json_bodies_get_a_400",
    },
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default: 60)")
    parser.add_argument(
        "--target", choices=TARGETS, action="append", help="default: all of them, in turn"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("corpus", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.seconds, args.corpus)
        return 0
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris (Linux and macOS wheels)")
        return 1
    from headrace.bench.machine import machine_info

    rows = [_run_target(target, args.seconds) for target in args.target or TARGETS]
    result = {
        "benchmark": "fuzz_codecs",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "atheris": getattr(atheris, "__version__", None) or _version("atheris"),
        "max_len": MAX_LEN,
        "targets": rows,
        "found_and_fixed": FOUND_AND_FIXED,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _print(rows)
    print(f"wrote {args.out}")
    return 1 if any(row["crashes"] for row in rows) else 0


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _print(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="atheris over the wire codecs")
    for column in ("target", "seconds", "runs", "coverage edges", "corpus", "crashes"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for row in rows:
        table.add_row(
            row["target"],
            f"{row['seconds']:.0f}",
            f"{row['runs']:,}",
            str(row["coverage_edges"]),
            str(row["corpus"]),
            str(len(row["crashes"])),
        )
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
