"""What a homework's grading holds, as JSON: units, their cases (public or hidden) and the graded
tests with their points. Packaging (``utils.deploy``) reads it in a subprocess, for the kit and for
a built bundle, to prove that a student bundle holds no hidden case or test.

    python -m autograder.manifest retinaface
"""
from __future__ import annotations

import argparse
import json

from autograder.grading import graded_tests
from autograder.units import HOMEWORKS, homework_units


def manifest(hw: str) -> dict:
    units = homework_units(hw)
    return {
        "units": {gid: {"notebook": u.notebook, "depends": list(u.depends),
                        "cases": [{"name": c.name, "public": c.public} for c in u.cases]}
                  for gid, u in units.items()},
        "tests": [{"name": t.__name__, "unit": t.graded.unit, "title": t.graded.title,
                   "points": t.graded.points, "public": t.graded.public} for t in graded_tests(hw)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homeworks", nargs="*", default=list(HOMEWORKS))
    args = parser.parse_args(argv)
    print(json.dumps({hw: manifest(hw) for hw in args.homeworks}))


if __name__ == "__main__":
    main()
