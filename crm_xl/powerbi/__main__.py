"""``python -m crm_xl.powerbi --sample-project DIR``: regenerate the committed sample project (``powerbi/``)
from the contract, e.g. after tables were added to it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crm_xl.errors import CrmXlError
from crm_xl.powerbi.project import sample_files, write_project


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_xl.powerbi", description=__doc__)
    parser.add_argument("--sample-project", type=Path, required=True, metavar="DIR",
                        help="the folder to write the sample project to (the repository's powerbi/)")
    args = parser.parse_args(argv)
    try:
        write_project(args.sample_project, sample_files())
    except (CrmXlError, OSError) as exc:
        print(f"crm_xl.powerbi: error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote the sample Power BI project to {args.sample_project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
