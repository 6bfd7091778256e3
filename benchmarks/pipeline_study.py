"""The pipeline study as a script: same options as ``headrace bench pipeline``.

    python benchmarks/pipeline_study.py --cpu-delay-ms 0,5 --num-buffers 1,2,3,4

Results land in benchmarks/results/pipeline_<cpu|gpu>.json with the machine they ran on.
"""

from __future__ import annotations

import argparse
import os
import sys

from headrace.bench.cli import add_pipeline_arguments, run_pipeline_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pipeline_arguments(parser)
    # This script records results: without --out they replace the tracked files.
    parser.set_defaults(results_dir=os.path.join(os.path.dirname(__file__), "results"))
    return run_pipeline_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
