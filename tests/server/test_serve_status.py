"""The model table ``headrace serve`` prints once serving fits an 80-column terminal."""

from __future__ import annotations

from types import SimpleNamespace

from headrace.server.cli import status_table
from narrow_terminal import assert_fits


class _Core:
    def loaded_versions(self) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(name="streaming_detector", version=1, backend="ensemble"),
            SimpleNamespace(name="mlp_torchscript", version=12, backend="pytorch"),
        ]

    def repository_index(self) -> list[SimpleNamespace]:
        reason = (
            "failed to load 'strain_cleaner' version 3: onnxruntime has no "
            "CUDAExecutionProvider; install the GPU build"
        )
        return [
            SimpleNamespace(name="streaming_detector", version="1", state="READY", reason=""),
            SimpleNamespace(name="mlp_torchscript", version="12", state="READY", reason=""),
            SimpleNamespace(name="strain_cleaner", version="3", state="UNAVAILABLE", reason=reason),
            SimpleNamespace(name="not_loaded_yet", version="", state="", reason=""),
        ]


def test_status_table_fits_80_columns() -> None:
    text = assert_fits(status_table(_Core()))  # type: ignore[arg-type]
    assert "NOT LOADED" in text and "CUDAExecutionProvider;" in text
