"""``--cache-config``: tritonserver's response cache flag, read into a cache size.

Triton's form is ``--cache-config <cache>,<key>=<value>``, repeated for more keys (a key given
twice keeps its last value). headrace has Triton's in-process ``local`` cache, whose one key is
``size`` (bytes): ``--cache-config local,size=1048576``. Anything else is refused with an
error that names the flag and the offending value.
"""

from __future__ import annotations

from collections.abc import Sequence

from headrace.errors import InvalidConfig

__all__ = ["FLAG", "parse_cache_config"]

FLAG = "--cache-config"
_EXAMPLE = "local,size=1048576"


def parse_cache_config(values: Sequence[str]) -> int:
    """The response cache size in bytes that ``values`` (each flag's text) ask for; 0 for none."""
    size_flag = ""
    for value in values:
        cache, key, setting = _split(value)
        if cache != "local":
            raise InvalidConfig(
                f"{FLAG} {value!r}: unknown cache {cache!r}; headrace has only the 'local' cache "
                f"(e.g. {FLAG} {_EXAMPLE})"
            )
        if key != "size":
            raise InvalidConfig(
                f"{FLAG} {value!r}: the local cache has no setting {key!r}; its only one is "
                f"'size' (e.g. {FLAG} {_EXAMPLE})"
            )
        size_flag, text = value, setting
    if not values:
        return 0
    if not text.isdigit():
        raise InvalidConfig(
            f"{FLAG} {size_flag!r}: size must be a whole number of bytes, got {text!r}"
        )
    size = int(text)
    if size <= 0:
        raise InvalidConfig(f"{FLAG} {size_flag!r}: size must be positive, got {size}")
    return size


def _split(value: str) -> tuple[str, str, str]:
    cache, comma, rest = value.partition(",")
    key, equals, setting = rest.partition("=")
    if not (comma and equals and cache.strip() and key.strip()):
        raise InvalidConfig(
            f"{FLAG} {value!r}: expected <cache>,<key>=<value>, e.g. {FLAG} {_EXAMPLE}"
        )
    return cache.strip(), key.strip(), setting.strip()
