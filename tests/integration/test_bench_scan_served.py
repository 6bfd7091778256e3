"""``headrace bench scan --url``: a served scan against a real ``headrace serve`` subprocess,
over HTTP and gRPC, side by side with the direct scan of the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve_process import start_server

from headrace.errors import Unavailable

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def tiny_repository(path: Path) -> Path:
    from headrace.repository import ModelRepository

    torch.manual_seed(0)
    repo = ModelRepository(path)
    entry = repo.add("tiny", max_batch_size=8)
    entry.export_version(
        torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()),
        input_shapes={"INPUT0": (None, 4)},
        output_names=["OUTPUT0"],
    )
    return path


def test_served_and_direct_scans_of_one_model(tmp_path: Path) -> None:
    from headrace.cli import main

    repo = tiny_repository(tmp_path / "repo")
    server = start_server(repo, tmp_path)
    try:
        out = tmp_path / "scan.json"
        command = [
            "bench",
            "scan",
            "tiny",
            "--repository",
            str(repo),
            "--direct",
            "--url",
            f"http://{server.http_url}",
            "--url",
            server.grpc_url,
            "--protocol",
            "grpc",
            "--trials",
            "3",
            "--warmup",
            "1",
            "--batch-sizes",
            "1,4",
            "--no-plot",
            "--out",
            str(out),
        ]
        assert main(command) == 0
    finally:
        assert server.stop() == 0
    document = json.loads(out.read_text())
    modes = [(p["mode"], p["batch_size"]) for p in document["points"]]
    assert modes == [(m, b) for b in (1, 4) for m in ("direct", "http", "grpc")]
    servers = [t["server"] for t in document["targets"]]
    assert servers[0] is None
    assert [(s["protocol"], s["name"]) for s in servers[1:]] == [  # Triton's name, as clients check
        ("http", "triton"),
        ("grpc", "triton"),
    ]
    assert all(p["throughput_mean"] > 0 and p["trials"] == 3 for p in document["points"])


def test_a_server_that_does_not_answer_is_named() -> None:
    from headrace.bench.scan_served import open_client

    refused = pytest.raises(Unavailable, match=r"http server at '127.0.0.1:9' did not describe")
    with refused, open_client("127.0.0.1:9", "http", "tiny"):
        pass
