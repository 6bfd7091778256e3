"""``headrace repo check REPO`` and ``headrace examples create DIR``.

``repo check`` prints one table row per model directory (valid or not) and then every problem
with its file and field; the exit code is 1 when there is any problem.
"""

from __future__ import annotations

import argparse
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.repository.api import ModelRepository
from headrace.repository.scan import ScanReport
from headrace.repository.version_policy import policy_text
from headrace.types import DataType

__all__ = ["models_table", "register", "render_report", "tensors_table"]


def register(subparsers: Any) -> None:
    """Add the ``repo`` and ``examples`` subcommands."""
    repo = subparsers.add_parser("repo", help="inspect a model repository")
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    check = repo_sub.add_parser("check", help="scan a repository and report every problem")
    check.add_argument("repository", metavar="REPO", help="a path or fsspec URL (s3://...)")
    check.add_argument(
        "--strict-model-config",
        choices=("true", "false"),
        default="true",
        help="as Triton's flag: 'false' lets models without config.pbtxt be auto-completed "
        "(default %(default)s)",
    )
    check.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec storage option (repeatable), e.g. anon=true (default: none)",
    )
    check.set_defaults(func=_check)

    examples = subparsers.add_parser("examples", help="the examples model repository")
    ex_sub = examples.add_subparsers(dest="examples_command", metavar="ACTION", required=True)
    create = ex_sub.add_parser("create", help="write the example models into DIR")
    create.add_argument(
        "directory",
        metavar="DIR",
        help="where to write them; a DIR that already holds exactly the examples is reused",
    )
    create.add_argument(
        "--force", action="store_true", help="replace whatever DIR holds with the examples"
    )
    create.set_defaults(func=_create_examples)


def _check(args: argparse.Namespace) -> int:
    repo = ModelRepository(
        args.repository,
        storage_options=_storage_options(args.storage_option),
        strict_model_config=args.strict_model_config == "true",
    )
    if not repo.storage.isdir():
        print(f"headrace: error: repository {repo.path!r} is not a directory")
        return 1
    report = repo.scan()
    render_report(repo, report)
    return 0 if report.ok else 1


def _create_examples(args: argparse.Namespace) -> int:
    from headrace.repository.examples import create_examples_repository, holds_anything

    reused = not args.force and holds_anything(ModelRepository(args.directory))
    repo = create_examples_repository(args.directory, force=args.force)
    done = "reused the" if reused else "created"
    print(f"{done} {len(repo.names())} example models in {repo.path}: {', '.join(repo.names())}")
    return 0


def render_report(repo: ModelRepository, report: ScanReport) -> None:
    """Print the models and tensors tables and the problems list with rich."""
    from rich.console import Console

    console = Console(highlight=False)
    console.print(models_table(repo, report))
    console.print(tensors_table(report))
    if report.problems:
        console.print(f"{len(report.problems)} problem(s):", style="bold red")
        for problem in report.problems:
            console.print(f"  {problem}", markup=False, soft_wrap=True)
    else:
        console.print(f"{len(report.entries)} model(s), no problems", style="green")


def models_table(repo: ModelRepository, report: ScanReport) -> Any:
    """One row per model directory, valid or not. Tensors have a table of their own, so that
    both fit an 80-column terminal without cutting words."""
    from rich.table import Table

    table = Table(title=f"model repository {repo.path}")
    for column in ("model", "versions", "backend", "max batch", "status"):
        table.add_column(column, overflow="fold")
    for name in repo.names():
        table.add_row(*_row(repo, report, name))
    return table


def tensors_table(report: ScanReport) -> Any:
    """The inputs and outputs of every valid model, one tensor a line."""
    from rich.table import Table

    table = Table(title="tensors")
    for column in ("model", "inputs", "outputs"):
        table.add_column(column, overflow="fold")
    for entry in report.entries:
        config = entry.completed_config()
        table.add_row(entry.name, _tensors(config.input), _tensors(config.output))
    return table


def _row(repo: ModelRepository, report: ScanReport, name: str) -> list[str]:
    entry = report.entry(name)
    problems = report.problems_for(name)
    if entry is None:
        raw = _readable_config(repo, name)
        present = _versions(repo[name].available_versions())
        backend = (raw.backend or raw.platform) if raw is not None else "?"
        return [name, present, backend or "?", "", "INVALID"]
    config = entry.completed_config()
    policy = config.version_policy if config.HasField("version_policy") else None
    served = f"{_versions(entry.versions())} ({policy_text(policy)})"
    backend = config.backend or config.platform
    status = "OK" if not problems else "WARN"
    return [name, served, backend, str(config.max_batch_size), status]


def _readable_config(repo: ModelRepository, name: str) -> model_config_pb2.ModelConfig | None:
    try:
        return repo[name].raw_config()
    except Exception:  # already reported as a problem; the row just shows "?"
        return None


def _versions(versions: list[int]) -> str:
    return ",".join(str(v) for v in versions) or "none"


def _tensors(tensors: Any) -> str:
    names = model_config_pb2.DataType.Name
    return "\n".join(
        f"{t.name} {DataType.from_name(names(t.data_type)).value} {list(t.dims)}" for t in tensors
    )


def _storage_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"headrace: error: --storage-option wants KEY=VALUE, got {pair!r}")
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options
