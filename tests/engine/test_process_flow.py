"""The worker's half of a stream's back-pressure (:class:`~headrace.engine.process_worker.Flow`):
a request's sends stop at ``SEND_WINDOW`` unacknowledged, go on when acknowledged or
resumed, stop waiting when cancelled, and give up with the server's message when a pause
outlasts its timeout."""

from __future__ import annotations

import threading

from headrace.engine.process_worker import ACK_EVERY, SEND_WINDOW, Flow

KEY = 7


def _fill(flow: Flow) -> None:
    for _ in range(SEND_WINDOW):
        assert flow.admit(KEY) is None


def _admit_in_thread(flow: Flow) -> tuple[threading.Thread, list[str | None]]:
    result: list[str | None] = []
    thread = threading.Thread(target=lambda: result.append(flow.admit(KEY)))
    thread.start()
    return thread, result


def test_an_acknowledgement_lets_a_full_window_send_again() -> None:
    flow = Flow()
    _fill(flow)
    thread, result = _admit_in_thread(flow)
    flow.take(("ack", KEY, ACK_EVERY))
    thread.join(30)
    assert result == [None]
    assert flow.admit(KEY) is None  # room for ACK_EVERY - 1 more


def test_a_resume_carries_the_acknowledgements_a_pause_withheld() -> None:
    flow = Flow()
    flow.take(("pause", KEY, 60.0, "not reading"))
    _fill(flow)  # a pause withholds acknowledgements; the window itself still holds
    thread, result = _admit_in_thread(flow)
    flow.take(("resume", KEY, 3))
    thread.join(30)
    assert result == [None]


def test_a_cancelled_request_stops_waiting() -> None:
    flow = Flow()
    flow.take(("pause", KEY, 60.0, "not reading"))
    _fill(flow)
    thread, result = _admit_in_thread(flow)
    flow.take(KEY)
    thread.join(30)
    assert result == [None]  # its sends are dropped by the server from here on


def test_a_pause_past_its_timeout_gives_up_with_the_servers_message() -> None:
    flow = Flow()
    flow.take(("pause", KEY, 0.05, "the client did not read this stream's responses"))
    _fill(flow)
    assert flow.admit(KEY) == "the client did not read this stream's responses"
    flow.forget(KEY)
    assert flow.admit(KEY) is None
