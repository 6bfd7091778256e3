"""KeptHeaders: a bounded table, the oldest header dropped first."""

from __future__ import annotations

import pytest

from headrace.server.kept_headers import KeptHeaders


def test_the_oldest_is_dropped_and_a_kept_key_is_replaced_in_place() -> None:
    kept: KeptHeaders[str, int] = KeptHeaders(capacity=2)
    kept.keep("a", 1)
    kept.keep("b", 2)
    kept.keep("a", 10)  # already kept: replaced, nothing dropped
    assert (kept.get("a"), kept.get("b"), len(kept)) == (10, 2, 2)
    kept.keep("c", 3)  # full: "a", kept first, goes
    assert (kept.get("a"), kept.get("b"), kept.get("c"), len(kept)) == (None, 2, 3, 2)


def test_capacity_zero_keeps_nothing_and_a_negative_one_is_refused() -> None:
    kept: KeptHeaders[str, int] = KeptHeaders(capacity=0)
    kept.keep("a", 1)
    assert (kept.get("a"), len(kept)) == (None, 0)
    with pytest.raises(ValueError, match="negative"):
        KeptHeaders(capacity=-1)
