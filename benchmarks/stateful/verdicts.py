"""How headrace's answers compare with NVIDIA Triton 2.51's, case by case.

Each case of a transcript (:mod:`sequence_client`, :mod:`decoupled_client`) gets one verdict:

- ``same``: both answers are equal;
- ``differs on purpose``: they differ in a way written down here, with its reason; the case's
  rule checks that each answer is the one that reason predicts (a rule that does not hold, or
  that fails on an answer of another shape, makes the case ``differs``);
- ``differs``: any other difference, which is a finding.

The reasons are the documented differences between the two servers; the side-by-side tests
(tests/integration/test_triton_sequences.py, test_generate_vs_triton.py) and
benchmarks/stateful_vs_triton.py share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decoupled_client import BAD_BODY, ERROR, GENERATE_CASES, body_errors, generate_key
from sequence_client import outputs

__all__ = [
    "DIFFERS",
    "ON_PURPOSE",
    "REASONS",
    "SAME",
    "SEQUENCE_RULES",
    "STATISTICS_RULES",
    "STREAM_RULES",
    "Rule",
    "Verdict",
    "classify",
    "generate_rules",
    "verdict",
]

SAME, ON_PURPOSE, DIFFERS = "same", "differs on purpose", "differs"

REASONS = {
    "implicit state": "Triton 2.51's python backend does not carry implicit state: each request "
    "gets the initial state and the state output is dropped (its docs name only the "
    "onnxruntime, TensorRT and PyTorch backends); headrace keeps the state for every backend",
    "string id, uint64 CORRID": "a string sequence id on a model whose CORRID control is "
    "TYPE_UINT64: Triton runs it and hands the model a meaningless CORRID; headrace refuses it "
    "(INVALID_ARGUMENT)",
    "string CORRID": "a TYPE_STRING CORRID control: Triton 2.51 refuses every request of such a "
    "model ('unexpected number of string elements 2'); headrace hands the model the id",
    "own words": "both refuse the request with the same status, each in its own words",
    "idle release": "a sequence released for being idle: headrace adds to Triton's message why "
    "the id is unknown",
    "malformed body": "a malformed generate body: Triton's JSON reader answers 500 (INTERNAL), "
    "headrace 400, as its infer endpoint does for the same input",
    "mixed stream": "one stream mixing decoupled and plain models: Triton 2.51 does not "
    "support it; it served some such streams in full and, at random, aborted the whole server "
    "on others (gRPC 'ASSERTION FAILED: !byte_buffer->Valid()', signal 6); headrace answers "
    "every request of every round",
}

Check = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class Rule:
    """A documented difference: its reason (a key of :data:`REASONS`) and the check that
    both answers, ``check(headrace, triton)``, are what that reason predicts."""

    reason: str
    check: Check


@dataclass(frozen=True)
class Verdict:
    """``kind`` (same, differs on purpose, differs) and, on purpose, the key of its reason."""

    kind: str
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        if not self.reason:
            return {"verdict": self.kind}
        return {"verdict": self.kind, "reason": self.reason, "why": REASONS[self.reason]}


def verdict(ours: Any, theirs: Any, rule: Rule | None) -> Verdict:
    """One case's verdict: headrace's answer ``ours`` against Triton's ``theirs``."""
    if ours == theirs:
        return Verdict(SAME)
    if rule is None:
        return Verdict(DIFFERS)
    try:
        holds = rule.check(ours, theirs)
    except (AssertionError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        holds = False  # an answer of another shape than the rule knows
    return Verdict(ON_PURPOSE, rule.reason) if holds else Verdict(DIFFERS)


def classify(
    ours: dict[str, Any], theirs: dict[str, Any], rules: dict[str, Rule]
) -> dict[str, Verdict]:
    """Every case of either transcript (a case only one has differs), in name order."""
    return {
        case: verdict(ours.get(case), theirs.get(case), rules.get(case))
        for case in sorted(ours.keys() | theirs.keys())
    }


# --- sequences (sequence_client.scenario) --------------------------------------------------


def _state_less(values: list[int], initial: int, sums: list[int], ids: bool = False) -> Check:
    """Headrace's running sums, Triton's ``initial + value`` for each request (no state)."""

    def check(ours: Any, theirs: Any) -> bool:
        carried = outputs(ours) == sums and outputs(theirs) == [initial + v for v in values]
        return carried and (not ids or outputs(ours, "ID") == outputs(theirs, "ID"))

    return check


def _same_status(ours: Any, theirs: Any) -> bool:
    return bool(ours["status"] == theirs["status"])


def _string_corrid(ours: Any, theirs: Any) -> bool:
    refused = all("unexpected number of string elements" in a["message"] for a in theirs)
    return refused and outputs(ours, "ID") == ["delta", "delta"]


def _string_id_on_uint64(ours: Any, theirs: Any) -> bool:
    return bool(outputs([theirs]) == [1] and ours["status"] == "400")


def _idle_release(ours: Any, theirs: Any) -> bool:
    (our_first, our_late), (their_first, their_late) = ours, theirs
    return bool(
        our_first == their_first
        and our_late["status"] == their_late["status"] == "400"
        and our_late["message"].startswith(their_late["message"])
    )


SEQUENCE_RULES: dict[str, Rule] = {
    "http accumulate": Rule("implicit state", _state_less([5, 3, 2, 1], 0, [5, 8, 10, 11])),
    "grpc accumulate, start on an open sequence": Rule(
        "implicit state", _state_less([4, 4, 7, 1], 0, [4, 8, 7, 8])
    ),
    "http string ids": Rule("implicit state", _state_less([1, 2, 3], 100, [101, 103, 106], True)),
    "grpc string ids": Rule("implicit state", _state_less([5, 6], 100, [105, 111], True)),
    "still serving": Rule("implicit state", _state_less([2, 2], 0, [2, 4])),
    "client sends a control input": Rule("own words", _same_status),
    "client sends a state input": Rule("own words", _same_status),
    "integer id on a string CORRID model": Rule("own words", _same_status),
    "string CORRID control": Rule("string CORRID", _string_corrid),
    "string id on a uint64 CORRID model": Rule("string id, uint64 CORRID", _string_id_on_uint64),
    "expired sequence": Rule("idle release", _idle_release),
}


# --- generate (decoupled_client.generate_scenario) -----------------------------------------


def _errors_alike(ours: Any, theirs: Any) -> bool:
    return bool(
        ours["content_type"] == theirs["content_type"]
        and len(body_errors(ours)) == len(body_errors(theirs)) >= 1
    )


def _error_rule(ours: Any, theirs: Any) -> bool:
    return bool(ours["status"] == theirs["status"] and _errors_alike(ours, theirs))


def _bad_body_rule(ours: Any, theirs: Any) -> bool:
    return bool((theirs["status"], ours["status"]) == (500, 400) and _errors_alike(ours, theirs))


def generate_rules() -> dict[str, Rule]:
    """The generate cases that may differ: errors in each server's words, malformed bodies."""
    rules = {}
    for kind, model, route, body in GENERATE_CASES:
        if kind == ERROR:
            rules[generate_key(model, route, body)] = Rule("own words", _error_rule)
        elif kind == BAD_BODY:
            rules[generate_key(model, route, body)] = Rule("malformed body", _bad_body_rule)
    return rules


# --- streams (decoupled_client.stream_scenario and mixed_stream) ----------------------------


def _served(answer: Any) -> bool:
    """A stream answered in full: every response, nothing more, plain ones in order."""
    return bool(answer["complete"] and answer["problems"] == [])


def _stream_words(ours: Any, theirs: Any) -> bool:
    return bool(
        _served(ours)
        and _served(theirs)
        and ours["responses"] == theirs["responses"]
        and ours["plain_order"] == theirs["plain_order"]
        and len(ours["errors"]) == len(theirs["errors"])
    )


def _mixed(ours: Any, theirs: Any) -> bool:
    """headrace serves every round and stays live; Triton's rounds are recorded, whatever
    they were (it served some in full and aborted on others, at random, here)."""
    rounds = ours["rounds"]
    served = all(_served(r) and r["server_live_after"] for r in rounds)
    return bool(rounds and served and theirs["rounds"])


STREAM_RULES: dict[str, Rule] = {
    "plain requests on one stream": Rule("own words", _stream_words),
    "one stream mixing decoupled and plain models": Rule("mixed stream", _mixed),
}


# --- statistics (stateful_vs_triton._statistics) ---------------------------------------------


def _one_more_run(ours: Any, theirs: Any) -> bool:
    """Triton ran one request headrace refused (uncounted, as Triton counts refusals)."""
    return bool(
        theirs["inference_count"] == ours["inference_count"] + 1
        and theirs["success"] == ours["success"] + 1
        and theirs["fail"] == ours["fail"]
    )


def _all_refused_by_triton(ours: Any, theirs: Any) -> bool:
    """Triton failed every request of the model; headrace served them."""
    return bool(
        theirs["inference_count"] == theirs["success"] == 0
        and theirs["fail"] > 0
        and ours["fail"] == 0
        and ours["success"] == ours["inference_count"] > 0
    )


STATISTICS_RULES = {
    "seq_controls": Rule("string id, uint64 CORRID", _one_more_run),
    "seq_corrid": Rule("string CORRID", _all_refused_by_triton),
}
