"""DVC stage `generate`: write the built-in demo fleet of synthetic machine sounds.

    python -m stages.generate data/demo --params params.yaml

Reads `generate` and `data.sample_rate` from params.yaml and replaces OUT_DIR with the fleet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.acoustic.synth import generate_fleet
from pipelines.params import load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic demo fleet.")
    parser.add_argument("out_dir", type=Path, help="fleet root to (re)write")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        counts = generate_fleet(args.out_dir, params.generate, params.data.sample_rate)
    except ValueError as exc:  # ParamError and InvalidNameError are ValueErrors too
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    for device, files in counts.items():
        print(f"{device}: {files} files in {args.out_dir / device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
