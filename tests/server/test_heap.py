"""Long-lived objects leave the garbage collector's walk once models are loaded."""

from __future__ import annotations

import gc

import numpy as np

from headrace.server.binding import Server, Tensor
from headrace.server.heap import refreeze


def test_refreeze_collects_then_freezes_what_survives() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.unfreeze()
    Cycle()  # garbage in a cycle: only a collection frees it
    refreeze()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert not any(type(o) is Cycle for o in gc.get_objects())
    refreeze()  # unfreezes first: the count does not pile up
    assert gc.get_freeze_count() <= frozen + 100
    gc.unfreeze()


def test_the_server_freezes_the_heap_once_its_models_are_loaded() -> None:
    gc.unfreeze()
    server = Server()
    server.bind("double", lambda x: x * 2, [Tensor("x")], [Tensor("y")])
    try:
        out = server.infer("double", {"x": np.ones(3, dtype=np.float32)})
        assert out["y"].tolist() == [2.0, 2.0, 2.0]
        assert gc.get_freeze_count() > 0
    finally:
        server.stop()
        gc.unfreeze()
