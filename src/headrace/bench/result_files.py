"""Where a study writes its JSON when ``--out`` is not given.

Running ``headrace bench …`` from a checkout must not replace the results recorded under
``benchmarks/results/``: by default a study writes a new file in the working directory and
never one that exists. The scripts under ``benchmarks/`` that record results set
``results_dir`` on their parser instead.
"""

from __future__ import annotations

import argparse
import itertools
import os

__all__ = ["result_path"]


def result_path(args: argparse.Namespace, stem: str) -> str:
    """Where a study's JSON goes without ``--out``: a new file in the working directory
    (``stem.json``, else ``stem-2.json``...), so a run from a checkout never replaces the
    recorded results; a script that records them sets ``results_dir`` on its parser."""
    results_dir = getattr(args, "results_dir", "")
    if results_dir:
        return os.path.join(results_dir, f"{stem}.json")
    for attempt in itertools.count(1):
        name = stem if attempt == 1 else f"{stem}-{attempt}"
        if not any(os.path.exists(name + suffix) for suffix in (".json", ".png")):
            return name + ".json"
    raise AssertionError("unreachable")
