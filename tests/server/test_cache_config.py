"""``--cache-config``: Triton's forms are read; anything else fails naming the flag."""

from __future__ import annotations

import pytest

from headrace.errors import InvalidConfig
from headrace.server.cache_config import parse_cache_config


def test_no_flag_means_no_cache() -> None:
    assert parse_cache_config([]) == 0


@pytest.mark.parametrize(
    ("values", "size"),
    [
        (["local,size=1048576"], 1048576),
        ([" local , size = 4096 "], 4096),
        (["local,size=1", "local,size=2048"], 2048),  # the last one wins, as in Triton
    ],
)
def test_local_sizes(values: list[str], size: int) -> None:
    assert parse_cache_config(values) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local", "expected <cache>,<key>=<value>"),
        ("local,size", "expected <cache>,<key>=<value>"),
        (",size=10", "expected <cache>,<key>=<value>"),
        ("local,=5", "expected <cache>,<key>=<value>"),
        ("redis,host=localhost", "unknown cache 'redis'; headrace has only the 'local' cache"),
        ("local,bogus=1", "the local cache has no setting 'bogus'"),
        ("local,size=abc", "size must be a whole number of bytes, got 'abc'"),
        ("local,size=1k", "size must be a whole number of bytes, got '1k'"),
        ("local,size=-5", "size must be a whole number of bytes, got '-5'"),
        ("local,size=0", "size must be positive, got 0"),
    ],
)
def test_malformed_values_name_the_flag(value: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        parse_cache_config([value])
    text = str(raised.value)
    assert text.startswith("--cache-config ")
    assert message in text
    assert "\n" not in text
