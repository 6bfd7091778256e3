"""Scan a repository into servable entries and the problems that keep the others out.

Nothing is skipped silently: every model directory either becomes an entry (with its
completed configuration for the newest served version already checked) or yields at least one
:class:`RepositoryProblem` naming the file and the field. A problem that does not stop the
model (a listed version that is missing, a served older version without its model file) is
reported while the entry is kept, as Triton keeps serving the versions it could load.

Ensembles are then checked against the servable models their steps run (a missing model,
an unmapped input, disagreeing data types or dims, a batch size over a step's), as Triton
checks them when it loads one. Such a problem is reported while the ensemble stays an
entry: the server loads the steps first and refuses the ensemble itself, naming the step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from headrace.config.ensemble_rules import check_ensemble_steps
from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.errors import HeadraceError, InvalidConfig
from headrace.repository.complete import check_model_files
from headrace.repository.ensemble_builder import composing_configs
from headrace.repository.entry import ModelEntry
from headrace.repository.storage import Storage
from headrace.repository.version_policy import select_versions

__all__ = ["RepositoryProblem", "ScanReport", "scan_model", "scan_repository"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepositoryProblem:
    """Why (part of) a model cannot be served: the model, the file, the field, the reason."""

    model: str
    path: str
    field: str
    message: str

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.path, self.field) if part)
        return f"model '{self.model}': {where}: {self.message}"


@dataclass(frozen=True)
class ScanReport:
    """Servable entries (sorted by name) and every problem found."""

    entries: tuple[ModelEntry, ...]
    problems: tuple[RepositoryProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]

    def entry(self, name: str) -> ModelEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    def problems_for(self, name: str) -> list[RepositoryProblem]:
        return [problem for problem in self.problems if problem.model == name]


def scan_repository(
    storage: Storage, names: list[str], *, strict_model_config: bool = True
) -> ScanReport:
    """Scan each named model directory of ``storage``."""
    entries: list[ModelEntry] = []
    problems: list[RepositoryProblem] = []
    for name in sorted(names):
        entry, found = scan_model(
            ModelEntry(storage, name, strict_model_config=strict_model_config)
        )
        if entry is not None:
            entries.append(entry)
        problems.extend(found)
    problems.extend(_ensemble_problems(entries))
    for problem in problems:
        logger.debug("repository problem: %s", problem)
    return ScanReport(tuple(entries), tuple(problems))


def scan_model(entry: ModelEntry) -> tuple[ModelEntry | None, list[RepositoryProblem]]:
    """Check one model; the entry is None when it cannot be served at all."""
    escape = _escapes_repository(entry)
    if escape:
        return None, [RepositoryProblem(entry.name, entry.path, "", escape)]
    problems: list[RepositoryProblem] = []
    available = entry.available_versions()
    if not available:
        problems.append(
            RepositoryProblem(
                entry.name,
                entry.path,
                "",
                "no version directory (a numeric sub-directory such as '1/' holding the model file)",
            )
        )
    try:
        raw = entry.raw_config()
    except HeadraceError as exc:
        problems.append(_problem(entry.name, exc, entry.config_path))
        return None, problems
    if not available:
        return None, problems
    source = entry.config_path if entry.has_config_file() else entry.path
    try:
        policy = raw.version_policy if raw.HasField("version_policy") else None
        selection = select_versions(policy, available, source=source)
    except HeadraceError as exc:
        problems.append(_problem(entry.name, exc, source))
        return None, problems
    for missing in selection.missing:
        problems.append(
            RepositoryProblem(
                entry.name,
                source,
                "version_policy.specific.versions",
                f"version {missing} is listed but {entry.version_path(missing)} does not exist",
            )
        )
    newest = selection.versions[-1]
    try:
        completed = entry.completed_config(newest)
    except HeadraceError as exc:
        problems.append(_problem(entry.name, exc, source))
        return None, problems
    except Exception as exc:  # a backend library failed on the model file: report, go on
        problems.append(
            RepositoryProblem(
                entry.name, entry.version_path(newest), "", f"{type(exc).__name__}: {exc}"
            )
        )
        return None, problems
    for older in selection.versions[:-1]:
        files = entry.storage.list_files(entry.name, str(older)) + entry.storage.list_dirs(
            entry.name, str(older)
        )
        try:
            check_model_files(completed, files, entry.version_path(older))
        except InvalidConfig as exc:
            problems.append(_problem(entry.name, exc, entry.version_path(older)))
    return entry, problems


def _ensemble_problems(entries: list[ModelEntry]) -> list[RepositoryProblem]:
    """Each servable ensemble against the servable models its steps run."""
    servable = {entry.name: entry for entry in entries}
    problems = []
    for entry in entries:
        config = entry.completed_config()
        if config.platform != ENSEMBLE_PLATFORM:
            continue
        source = entry.config_path if entry.has_config_file() else entry.path
        steps = [(step.model_name, step.model_version) for step in config.ensemble_scheduling.step]
        try:
            check_ensemble_steps(config, composing_configs(steps, servable.get, source), source)
        except HeadraceError as exc:
            problems.append(_problem(entry.name, exc, source))
        except Exception as exc:  # a step's backend failed on an older version's file
            problems.append(
                RepositoryProblem(entry.name, source, "", f"{type(exc).__name__}: {exc}")
            )
    return problems


def _escapes_repository(entry: ModelEntry) -> str:
    """Why a local model directory is refused: one that resolves outside the repository
    (whoever can write the repository must not reach the rest of the disk through it); empty
    when it stays inside. The listing already skips symbolic links to directories (fsspec
    calls them ``other``); this holds the line for any name handed in another way."""
    storage = entry.storage
    if not storage.is_local:
        return ""
    root = os.path.realpath(storage.root)
    real = os.path.realpath(storage.full(entry.name))
    if real == root or not real.startswith(root.rstrip(os.sep) + os.sep):
        return (
            f"the model directory is a symbolic link to {real}, outside the repository "
            f"{root}; refused (copy the model into the repository instead)"
        )
    return ""


def _problem(model: str, exc: HeadraceError, default_path: str) -> RepositoryProblem:
    """A problem from an error, keeping the file and field the error names."""
    source = getattr(exc, "source", "") or ""
    field = getattr(exc, "field", "") or ""
    message = exc.message
    prefix = ": ".join(part for part in (source, field) if part)
    if prefix and message.startswith(prefix + ": "):
        message = message[len(prefix) + 2 :]
    return RepositoryProblem(model, source or default_path, field, message)
