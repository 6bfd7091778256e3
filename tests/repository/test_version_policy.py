"""Triton's version policy: which version directories are served."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig
from headrace.repository.version_policy import parse_version, policy_text, select_versions

Policy = model_config_pb2.ModelVersionPolicy


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1", 1),
        ("12", 12),
        ("0", None),
        ("01", None),
        ("v1", None),
        ("1a", None),
        ("", None),
        ("\u0661", None),  # a non-ASCII digit
        ("-1", None),
    ],
)
def test_parse_version_ignores_non_numeric_and_zero_prefixed(
    name: str, expected: int | None
) -> None:
    assert parse_version(name) == expected


def test_default_policy_is_latest_one() -> None:
    assert select_versions(None, [3, 1, 2]).versions == (3,)
    assert select_versions(Policy(), [3, 1, 2]).versions == (3,)


def test_latest_n_takes_highest_numbers_not_names() -> None:
    policy = Policy(latest=Policy.Latest(num_versions=2))
    assert select_versions(policy, [9, 10, 2]).versions == (9, 10)
    assert select_versions(Policy(latest=Policy.Latest(num_versions=5)), [1, 2]).versions == (1, 2)


def test_latest_zero_is_an_error_naming_the_field() -> None:
    with pytest.raises(InvalidConfig) as info:
        select_versions(Policy(latest=Policy.Latest(num_versions=0)), [1], source="m/config.pbtxt")
    assert info.value.field == "version_policy.latest.num_versions"
    assert "m/config.pbtxt" in str(info.value)


def test_all_serves_every_version() -> None:
    assert select_versions(Policy(all=Policy.All()), [4, 1, 2]).versions == (1, 2, 4)


def test_specific_serves_listed_present_versions_and_reports_missing() -> None:
    policy = Policy(specific=Policy.Specific(versions=[3, 1, 7]))
    selection = select_versions(policy, [1, 2, 3])
    assert selection.versions == (1, 3)
    assert selection.missing == (7,)


def test_no_version_left_is_an_error() -> None:
    policy = Policy(specific=Policy.Specific(versions=[5]))
    with pytest.raises(InvalidConfig, match=r"no version to serve under policy specific\[5\]"):
        select_versions(policy, [1, 2], source="repo/m/config.pbtxt")
    with pytest.raises(InvalidConfig, match="available: none"):
        select_versions(None, [])


def test_policy_text() -> None:
    assert policy_text(None) == "latest(1)"
    assert policy_text(Policy(all=Policy.All())) == "all"
    assert policy_text(Policy(specific=Policy.Specific(versions=[2, 1]))) == "specific[1, 2]"
