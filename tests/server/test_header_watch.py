"""HeaderWatch's rule (headrace.server.http.header_watch.judge) and how it keys peers."""

from __future__ import annotations

from headrace.server.http.header_watch import Conn, judge, peer_of

TIMEOUT_S = 2.0


def test_a_connection_that_never_sends_a_request_owes_its_headers_from_first_sight() -> None:
    conn = Conn(received=0)
    assert not judge(conn, 0, 0, 0, now=10.0, timeout_s=TIMEOUT_S)
    assert not judge(conn, 5, 0, 0, now=11.0, timeout_s=TIMEOUT_S)
    assert judge(conn, 5, 0, 0, now=12.0, timeout_s=TIMEOUT_S)


def test_an_idle_connection_after_a_request_owes_nothing_however_long() -> None:
    conn = Conn(received=0)
    assert not judge(conn, 100, 2, 0, now=0.0, timeout_s=TIMEOUT_S)  # one request, answered
    for now in (1.0, 10.0, 1000.0):
        assert not judge(conn, 100, 2, 0, now=now, timeout_s=TIMEOUT_S)


def test_bytes_after_the_last_request_without_new_headers_are_cut_after_the_timeout() -> None:
    conn = Conn(received=0)
    assert not judge(conn, 100, 2, 0, now=0.0, timeout_s=TIMEOUT_S)
    assert not judge(conn, 101, 2, 0, now=50.0, timeout_s=TIMEOUT_S)  # a first byte: owing
    assert not judge(conn, 103, 2, 0, now=51.0, timeout_s=TIMEOUT_S)
    assert judge(conn, 104, 2, 0, now=52.0, timeout_s=TIMEOUT_S)


def test_a_request_in_flight_or_a_new_one_clears_the_debt() -> None:
    conn = Conn(received=0)
    assert not judge(conn, 10, 0, 0, now=0.0, timeout_s=TIMEOUT_S)
    assert not judge(conn, 10, 1, 1, now=5.0, timeout_s=TIMEOUT_S)  # its headers came in
    assert not judge(conn, 900, 1, 1, now=60.0, timeout_s=TIMEOUT_S)  # a slow model, a body
    assert not judge(conn, 900, 2, 0, now=61.0, timeout_s=TIMEOUT_S)  # answered
    assert conn.owing_since is None
    assert not judge(conn, 900, 2, 0, now=100.0, timeout_s=TIMEOUT_S)


def test_peers_are_keyed_alike_from_granian_and_from_the_socket() -> None:
    assert peer_of("127.0.0.1:50123") == ("127.0.0.1", 50123)
    assert peer_of("::1:50123") == ("::1", 50123)
    assert peer_of("[::1]:50123") == ("::1", 50123)
    assert peer_of("::ffff:127.0.0.1:50123") == ("127.0.0.1", 50123)
