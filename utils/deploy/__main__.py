"""Build a homework's bundles into outputs/dist/.

    python -m utils.deploy student-kit --hw retinaface   # <hw>-student.zip (public checks only)
    python -m utils.deploy gradescope --hw retinaface    # <hw>-autograder.zip (Gradescope)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.deploy import gradescope, student
from utils.deploy.bundle import REPO_ROOT, PackagingError

BUILDERS = {"student-kit": student.build, "gradescope": gradescope.build}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", choices=sorted(BUILDERS))
    parser.add_argument("--hw", required=True, help="homework name (a folder autograder/<hw>/)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "dist")
    args = parser.parse_args(argv)
    try:
        archive = BUILDERS[args.bundle](args.hw, args.out)
    except PackagingError as err:
        print(f"{args.bundle}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
