"""Model repositories in Triton's layout: scan, version policy, storage, Python API, export.

``ModelRepository`` is the entry point; local paths and fsspec URLs (``s3://``, ``gs://``,
``memory://``) both work.
"""

from __future__ import annotations

from headrace.repository.api import ModelRepository, TensorLike
from headrace.repository.ensemble_builder import EnsembleStep
from headrace.repository.entry import ModelEntry
from headrace.repository.entry_config import EntryConfig
from headrace.repository.handles import TensorHandle, TensorHandles
from headrace.repository.scan import RepositoryProblem, ScanReport
from headrace.repository.storage import Storage
from headrace.repository.version_policy import VersionSelection, parse_version, select_versions

__all__ = [
    "EnsembleStep",
    "EntryConfig",
    "ModelEntry",
    "ModelRepository",
    "RepositoryProblem",
    "ScanReport",
    "Storage",
    "TensorHandle",
    "TensorHandles",
    "TensorLike",
    "VersionSelection",
    "parse_version",
    "select_versions",
]
