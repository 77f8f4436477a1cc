"""DVC stage: register each scope's candidate, let the store's gate judge it, export production.

python -m stages.deploy [--family F] ARGS... [--params params.yaml]

Every candidate is registered with its lineage (the same bytes again register nothing new).
In a plain run (not a DVC experiment) with auto_promote it is promoted through the store's
gate, and the family's deploy folder is then made to hold the registry's production
versions, one bundle per scope; an experiment only records what the gate would decide.
Prints one line per scope: what was registered, what the gate decided. The family's
`Deploy` (pipelines/<family>/stages.py) names its ARGS; `--family F --help` lists them.
"""

from __future__ import annotations

import sys

from stages import common


def main(argv: list[str] | None = None) -> int:
    return common.main("deploy", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
