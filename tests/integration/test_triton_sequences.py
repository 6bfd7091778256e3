"""Side by side with NVIDIA Triton 2.51: the same sequence models, the same client script.

Runs only where the tritonserver tool is installed (``../shared/tools/tritonserver`` next to
the repository, with ``~/.cache/headrace-tools/tritonserver/dist/.ready``): it serves the
``seq_*`` python-backend models with ``headrace serve`` and then with Triton, runs
:func:`sequence_client.scenario` against each and compares the transcripts with the verdicts
that benchmarks/stateful_vs_triton.py records (:mod:`verdicts`).

Where they agree, the answers must be equal (errors: same status and Triton's message).
Where they differ on purpose, a rule of :data:`verdicts.SEQUENCE_RULES` checks both answers:

- implicit state: Triton 2.51's python backend feeds each request the *initial* state and
  drops the state output (it does not support implicit state; its docs name only the
  onnxruntime, TensorRT and PyTorch backends), so its sums never carry; headrace keeps the state
  for every backend;
- a string id on a model whose CORRID control is TYPE_UINT64: Triton runs it and hands the
  model a meaningless CORRID; headrace refuses it (INVALID_ARGUMENT);
- a TYPE_STRING CORRID control: Triton 2.51 refuses every request of such a model ("unexpected
  number of string elements 2 for inference input 'CORRID'"), headrace hands the model the id;
  an integer id there both refuse (Triton with a garbled message);
- control or state inputs sent by a client: both refuse them (INVALID_ARGUMENT), in their own
  words;
- an idle-released sequence: headrace adds to Triton's message why the id is unknown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sequence_client import outputs, scenario, sequence_repository
from serve_process import start_server
from triton_process import TRITON_MISSING, triton_server
from verdicts import DIFFERS, ON_PURPOSE, SEQUENCE_RULES, classify

pytestmark = pytest.mark.skipif(TRITON_MISSING, reason="the tritonserver tool is not installed")


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Triton serving the sequence models: its HTTP and gRPC addresses."""
    repository = sequence_repository(tmp_path / "triton-repo")
    with triton_server(repository, tmp_path) as server:
        yield server.http_url, server.grpc_url


def test_headrace_and_triton_answer_the_sequence_client_alike(
    tmp_path: Path, triton: tuple[str, str]
) -> None:
    theirs = scenario(*triton)
    ours_server = start_server(sequence_repository(tmp_path / "repo"), tmp_path)
    try:
        ours = scenario(ours_server.http_url, ours_server.grpc_url)
    finally:
        assert ours_server.stop() == 0, ours_server.log_tail()
    both = {"headrace": ours, "triton": theirs}
    (tmp_path / "transcripts.json").write_text(json.dumps(both, indent=1))  # for a failure
    _compare(ours, theirs)


def _compare(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    found = classify(ours, theirs, SEQUENCE_RULES)
    unexpected = {
        step: (ours.get(step), theirs.get(step))
        for step, verdict in found.items()
        if verdict.kind == DIFFERS
    }
    assert not unexpected, unexpected
    # the documented differences are there (a Triton that changed would make them "same")
    assert {step for step, v in found.items() if v.kind == ON_PURPOSE} == set(SEQUENCE_RULES)
    assert outputs(ours["http accumulate"]) == [5, 8, 10, 11]
