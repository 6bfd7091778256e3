"""Which versions of a model are served: Triton's ``version_policy``.

Facts kept from Triton's model repository documentation and loader:

- a version is a sub-directory whose name is a decimal number; names that are not numeric or
  that start with ``0`` are ignored (so ``0`` itself is never a version);
- ``latest { num_versions: N }`` serves the N highest versions; it is the default with N = 1;
- ``all {}`` serves every version present;
- ``specific { versions: [...] }`` serves the listed versions that are present; a listed one
  that is missing is an error for that version only;
- a policy that leaves no version to serve is an error for the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig

__all__ = ["VersionSelection", "parse_version", "policy_text", "select_versions"]

VersionPolicy = model_config_pb2.ModelVersionPolicy


def parse_version(name: str) -> int | None:
    """The version number a directory name stands for, or None when Triton ignores it."""
    if not name or not name.isascii() or not name.isdigit() or name.startswith("0"):
        return None
    return int(name)


@dataclass(frozen=True)
class VersionSelection:
    """The versions a policy serves (ascending) and the listed ones that are missing."""

    versions: tuple[int, ...]
    missing: tuple[int, ...] = ()


def select_versions(
    policy: model_config_pb2.ModelVersionPolicy | None,
    available: Iterable[int],
    *,
    source: str = "",
) -> VersionSelection:
    """Apply ``policy`` (None or unset = ``latest {num_versions: 1}``) to ``available``.

    Raises InvalidConfig naming ``source`` and the policy when nothing is left to serve.
    """
    present = sorted(set(available))
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    missing: list[int] = []
    if policy is None or kind is None:
        chosen = present[-1:]
    elif kind == "latest":
        count = policy.latest.num_versions
        if count < 1:
            raise InvalidConfig(
                f"latest.num_versions must be >= 1, got {count}",
                source=source,
                field="version_policy.latest.num_versions",
            )
        chosen = present[-count:]
    elif kind == "all":
        chosen = present
    else:
        wanted = sorted(set(policy.specific.versions))
        chosen = [v for v in wanted if v in present]
        missing = [v for v in wanted if v not in present]
    if not chosen:
        raise InvalidConfig(
            f"no version to serve under policy {policy_text(policy)} "
            f"(available: {present or 'none'})",
            source=source,
            field="version_policy",
        )
    return VersionSelection(tuple(chosen), tuple(missing))


def policy_text(policy: model_config_pb2.ModelVersionPolicy | None) -> str:
    """A one-line description: ``latest(2)``, ``all``, ``specific[1, 3]``."""
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    if policy is None or kind is None:
        return "latest(1)"
    if kind == "latest":
        return f"latest({policy.latest.num_versions})"
    if kind == "all":
        return "all"
    return f"specific{sorted(policy.specific.versions)}"
