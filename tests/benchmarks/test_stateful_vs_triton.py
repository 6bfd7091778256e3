"""The verdicts of benchmarks/stateful_vs_triton.py: same, differs on purpose, differs.

Synthetic transcripts, no servers: each documented difference holds only when both answers are
the ones its reason predicts, anything else is a finding, and the stream check matches errors
by the part of their text any server's words hold.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_scripts import load_script
from decoupled_client import (
    GENERATE_CASES,
    Sent,
    check,
    generate_key,
)
from verdicts import (
    DIFFERS,
    ON_PURPOSE,
    REASONS,
    SAME,
    SEQUENCE_RULES,
    STREAM_RULES,
    Rule,
    classify,
    generate_rules,
    verdict,
)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "stateful_vs_triton.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    module = load_script(SCRIPT, "stateful_vs_triton")
    return module


def _ok(*values: int) -> list[dict[str, Any]]:
    return [{"outputs": {"OUTPUT": [v]}} for v in values]


def _error(status: str, message: str) -> dict[str, str]:
    return {"status": status, "message": message}


def test_equal_answers_are_the_same_whatever_the_rule() -> None:
    assert verdict(_ok(1), _ok(1), None).kind == SAME
    assert verdict(_ok(1), _ok(1), SEQUENCE_RULES["http accumulate"]).kind == SAME


def test_a_difference_without_a_rule_is_a_finding() -> None:
    assert verdict(_ok(1), _ok(2), None).kind == DIFFERS


def test_a_rule_that_does_not_hold_or_meets_another_shape_is_a_finding() -> None:
    rule = Rule("own words", lambda ours, theirs: ours["status"] == theirs["status"])
    assert verdict(_error("400", "a"), _error("404", "b"), rule).kind == DIFFERS
    assert verdict(_ok(1), _error("400", "b"), rule).kind == DIFFERS  # no status: TypeError


def test_implicit_state_holds_only_for_headrace_sums_and_triton_state_less_values() -> None:
    rule = SEQUENCE_RULES["http accumulate"]  # values 5, 3, 2, 1
    found = verdict(_ok(5, 8, 10, 11), _ok(5, 3, 2, 1), rule)
    assert found.kind == ON_PURPOSE and found.reason == "implicit state"
    assert found.as_dict()["why"] == REASONS["implicit state"]
    assert verdict(_ok(5, 8, 10, 12), _ok(5, 3, 2, 1), rule).kind == DIFFERS
    assert verdict(_ok(5, 8, 10, 11), _ok(5, 3, 2, 2), rule).kind == DIFFERS


def test_string_ids_must_also_echo_the_same_id() -> None:
    rule = SEQUENCE_RULES["grpc string ids"]  # values 5, 6 from 100

    def answers(values: tuple[int, ...], ident: str) -> list[dict[str, Any]]:
        return [{"outputs": {"OUTPUT": [v], "ID": [ident]}} for v in values]

    assert verdict(answers((105, 111), "beta"), answers((105, 106), "beta"), rule).kind == (
        ON_PURPOSE
    )
    assert verdict(answers((105, 111), "beta"), answers((105, 106), "x"), rule).kind == DIFFERS


def test_the_idle_release_message_must_extend_tritons() -> None:
    rule = SEQUENCE_RULES["expired sequence"]
    theirs = [_ok(1)[0], _error("400", "inference request for sequence 107 to model")]
    ours = [_ok(1)[0], _error("400", theirs[1]["message"] + ": released after 2 s idle")]
    assert verdict(ours, theirs, rule).kind == ON_PURPOSE
    other = [_ok(1)[0], _error("400", "something else")]
    assert verdict(other, theirs, rule).kind == DIFFERS


def test_the_uint64_corrid_and_string_corrid_differences() -> None:
    rule = SEQUENCE_RULES["string id on a uint64 CORRID model"]
    assert verdict(_error("400", "no"), _ok(1)[0], rule).kind == ON_PURPOSE
    assert verdict(_error("500", "no"), _ok(1)[0], rule).kind == DIFFERS
    rule = SEQUENCE_RULES["string CORRID control"]
    ours = [{"outputs": {"OUTPUT": [1], "ID": ["delta"]}}] * 2
    theirs = [_error("400", "unexpected number of string elements 2 for 'CORRID'")] * 2
    assert verdict(ours, theirs, rule).kind == ON_PURPOSE
    assert verdict(ours, [_error("400", "other")] * 2, rule).kind == DIFFERS


def test_a_case_only_one_transcript_has_differs() -> None:
    found = classify({"a": 1, "b": 2}, {"a": 1}, {})
    assert [(case, v.kind) for case, v in found.items()] == [("a", SAME), ("b", DIFFERS)]


def _http(status: int, body: str, content_type: str = "application/json") -> dict[str, Any]:
    return {"status": status, "content_type": content_type, "body": body}


def test_generate_errors_need_the_same_status_and_kind_of_body() -> None:
    rules = generate_rules()
    assert len({generate_key(m, r, b) for _, m, r, b in GENERATE_CASES}) == len(GENERATE_CASES)
    error = rules[generate_key("raising", "generate", '{"X": 13}')]
    ours, theirs = _http(500, '{"error":"ours"}'), _http(500, '{"error":"theirs"}')
    assert verdict(ours, theirs, error).kind == ON_PURPOSE
    assert verdict(_http(400, '{"error":"ours"}'), theirs, error).kind == DIFFERS
    assert verdict(_http(500, '{"x":1}'), theirs, error).kind == DIFFERS
    stream = rules[generate_key("raising", "generate_stream", '{"X": 13}')]
    events = "text/event-stream; charset=utf-8"
    one, two = 'data: {"error":"a"}\n\n', 'data: {"error":"a"}\n\ndata: {"error":"b"}\n\n'
    assert verdict(_http(500, one, events), _http(500, two, events), stream).kind == DIFFERS
    bad = rules[generate_key("request_meta", "generate", "not json")]
    assert verdict(_http(400, '{"error":"a"}'), _http(500, '{"error":"b"}'), bad).kind == (
        ON_PURPOSE
    )
    assert verdict(_http(500, '{"error":"a"}'), _http(400, '{"error":"b"}'), bad).kind == DIFFERS


def _stream(problems: list[str], errors: list[str], live: bool = True) -> dict[str, Any]:
    return {
        "responses": {"p1": [{"id": "p1", "final": True, "META": "p1"}]},
        "errors": errors,
        "plain_order": ["p1", "'nope'"],
        "complete": not problems,
        "problems": problems,
        "server_live_after": live,
    }


def test_plain_streams_may_differ_only_in_the_words_of_their_errors() -> None:
    rule = STREAM_RULES["plain requests on one stream"]
    ours = _stream([], ["unknown model 'nope'"])
    theirs = _stream([], ["Request for unknown model: 'nope' is not found"])
    assert verdict(ours, theirs, rule).kind == ON_PURPOSE
    assert verdict(ours, _stream(["p1: got []"], theirs["errors"]), rule).kind == DIFFERS


def test_the_mixed_stream_needs_every_headrace_round_served() -> None:
    rule = STREAM_RULES["one stream mixing decoupled and plain models"]
    served = _stream([], ["x"])
    aborted = {"rounds": [_stream(["m0-p5: got []"], [], live=False)], "server_exit": -6}
    assert verdict({"rounds": [served, served]}, aborted, rule).kind == ON_PURPOSE
    assert verdict({"rounds": [served, served]}, {"rounds": [served]}, rule).kind == ON_PURPOSE
    broken = {"rounds": [served, _stream(["p1: got []"], [])]}
    assert verdict(broken, aborted, rule).kind == DIFFERS


def _plain(request_id: str) -> Sent:
    return Sent(request_id, True, ({"id": request_id, "final": True, "META": request_id},))


def _answer(request_id: str) -> dict[str, Any]:
    return {"id": request_id, "final": True, "META": request_id}


def test_stream_check_matches_errors_by_the_part_every_server_says() -> None:
    sent = [_plain("a"), Sent("bad", True, error="'nope'"), _plain("b")]
    theirs = [_answer("a"), {"error": "Request for unknown model: 'nope' is not found"}]
    assert check(sent, [*theirs, _answer("b")]) == []
    assert check(sent, [_answer("a"), {"error": "unknown model 'nope'"}, _answer("b")]) == []
    late = check(sent, [_answer("a"), _answer("b"), {"error": "unknown model 'nope'"}])
    assert late == ["plain answers in the order ['a', 'b', \"'nope'\"]"]
    assert check(sent, [_answer("a"), _answer("b")])[0].startswith("errors that never came")
    extra = check(sent, [*theirs, _answer("b"), _answer("b")])
    assert extra and extra[0].startswith("b: got")


def test_the_summary_names_every_unexpected_difference(script: ModuleType) -> None:
    headrace = {"sequences": {"http accumulate": _ok(5, 8, 10, 11), "batch of two": _ok(1)}}
    triton = {"sequences": {"http accumulate": _ok(5, 3, 2, 1), "batch of two": _ok(2)}}
    cases = script.judge(headrace, triton)
    assert cases["sequences"]["http accumulate"]["verdict"] == ON_PURPOSE
    assert cases["sequences"]["batch of two"] == {"verdict": DIFFERS}
    assert cases["generate"] == {} and cases["streams"] == {}
    summary = script.summary(cases)
    assert summary == {
        "counts": {DIFFERS: 1, ON_PURPOSE: 1},
        "differ": ["sequences: batch of two"],
    }


def test_the_mixed_summary_says_how_a_server_took_the_rounds(script: ModuleType) -> None:
    served = _stream([], [])
    aborted = {"rounds": [served, _stream(["x"], [], live=False)], "server_exit": -6}
    assert script.mixed_summary({"rounds": [served]}) == "1/1 rounds served in full"
    assert script.mixed_summary(aborted) == (
        "1/2 rounds served in full, then the server died (exit -6)"
    )
