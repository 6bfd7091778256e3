"""Telling stale shared actors from used ones: names, and what a frontend's marker counts."""

from __future__ import annotations

from headrace.engine.ray_frontends import ActorEntry, _Marker, parse_name


def test_names_headrace_makes_parse_into_their_fields() -> None:
    assert parse_name("m/1/m_0_1@0123456789ab") == ("m", "1", "m_0_1", "0123456789ab")
    assert parse_name("m/12/m_0_0#deadbeef") == ("m", "12", "m_0_0", "")
    assert parse_name("headrace-frontend/abc") is None
    assert parse_name("m/x/m_0_0@d") is None  # not a version
    assert parse_name("other") is None


def test_a_marker_counts_each_use_until_each_is_dropped() -> None:
    marker = _Marker()
    marker.use(["a", "b"])
    marker.use(["a"])  # the same model loaded again
    marker.drop("a")
    assert marker.names() == ["a", "b"]
    marker.drop("a")
    marker.drop("b")
    marker.drop("b")  # an extra drop is harmless
    assert marker.names() == []


def test_only_a_shared_actor_no_frontend_uses_is_stale() -> None:
    def entry(config: str, users: int) -> ActorEntry:
        return ActorEntry("n", "m", "1", "m_0_0", config, "node", "ALIVE", users)

    assert entry("abc", 0).stale
    assert not entry("abc", 1).stale
    assert not entry("", 0).stale  # owned: it ends with its frontend
