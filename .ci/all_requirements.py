"""Print ``name==version`` for every distribution ``pip install 'headrace[all]'`` brings in, as
installed here: the pinned list ``.ci/audit`` hands to pip-audit (no resolver, no network)."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

from packaging.requirements import Requirement


def _closure(root: str, extras: set[str]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    todo = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement of another platform, not installed here
        if key != "headrace":
            pinned[key] = dist.version
        for text in dist.requires or ():
            requirement = Requirement(text)
            markers = requirement.marker
            applies = markers is None or any(
                markers.evaluate({"extra": extra}) for extra in (wanted or {""})
            )
            if applies:
                todo.append((requirement.name, frozenset(requirement.extras)))
    return pinned


if __name__ == "__main__":
    for name, version in sorted(_closure("headrace", {"all"}).items()):
        sys.stdout.write(f"{name}=={version}\n")
