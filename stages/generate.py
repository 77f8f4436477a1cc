"""DVC stage: a family's `generate` params -> its built-in demo data (the acoustic family:
a fleet of synthetic machine sounds; the tabular family: tasks Q1..Q5 and the diabetes set).

python -m stages.generate [--family F] OUT_DIR [--params params.yaml]

OUT_DIR is this stage's output: it is replaced as a whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the data root to write")
    parser.add_argument("--params", default="params.yaml", help="the params file")
    parser.add_argument("--family", default=families.DEFAULT, help="the model family")
    args = parser.parse_args(argv)
    try:
        family = families.load(args.family)
        params = families.resolve(family.PARAMS)(args.params)
        written = families.resolve(family.GENERATE)(args.out, params)
    except ValueError as exc:  # ParamError and InvalidNameError are ValueErrors too
        print(f"generate: {exc}", file=sys.stderr)
        return 2  # as the other stages do for unusable input
    for scope, what in written.items():
        print(f"{scope}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
