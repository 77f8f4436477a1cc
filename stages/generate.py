"""DVC stage: params.yaml `generate` -> the built-in demo fleet of synthetic machine sounds.

python -m stages.generate OUT_DIR [--params params.yaml]

OUT_DIR is this stage's output: it is replaced as a whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.acoustic.synth import generate_fleet
from pipelines.params import load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the fleet root to write")
    parser.add_argument("--params", default="params.yaml", help="the params file")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        counts = generate_fleet(args.out, params.generate, params.data.sample_rate)
    except ValueError as exc:  # ParamError and InvalidNameError are ValueErrors too
        print(f"generate: {exc}", file=sys.stderr)
        return 2  # as the other stages do for unusable input
    for device, files in counts.items():
        print(f"{device}: {files} files in {args.out / device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
