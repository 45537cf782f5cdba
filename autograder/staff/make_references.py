"""Regenerate ``autograder/references/<hw>.pt`` from the solutions (``make references``).

Runs every case of every unit on ``solutions/<hw>/`` through the same sandboxed worker that grades
students, and stores the outputs. Fails, writing nothing, if any solution case fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from autograder.grading import references_path
from autograder.sandbox.supervisor import REPO_ROOT, Sandbox
from autograder.sandbox.transfer import wrap
from autograder.units import HOMEWORKS, Case, homework_units


def solution_outputs(hw: str, solutions: Path, keep: Callable[[Case], bool]) -> dict[tuple[str, str], Any]:
    """{(unit, case): the solution's output} for every case ``keep`` accepts, from the sandboxed
    worker that grades students; every case must run cleanly (SystemExit listing what did not)."""
    sandbox = Sandbox(hw, solutions / hw, solutions / hw, unit_timeout=600)
    outputs, failures = {}, []
    try:
        sandbox.start()
        for gid, unit in homework_units(hw).items():
            run = sandbox.run(gid)
            if run.status != "ok":
                failures.append(f"{gid}: {run.status}: {run.detail}")
                continue
            for case in unit.cases:
                result = run.cases.get(case.name)
                if result is None or not result.ok:
                    failures.append(f"{gid} / {case.name}: {result.kind if result else 'no result'}: "
                                    f"{result.message if result else ''}")
                elif keep(case):
                    outputs[gid, case.name] = result.value
    finally:
        sandbox.close()
    if failures or sandbox.problems:
        raise SystemExit("the solutions do not run cleanly; nothing written:\n  "
                         + "\n  ".join(sandbox.problems + failures))
    return outputs


def make_references(hw: str, solutions: Path = REPO_ROOT / "solutions") -> dict:
    """{unit: {case: output, wrapped}} for the cases whose outputs are stored (``Case.reference``)."""
    references = {gid: {} for gid in homework_units(hw)}
    if not any(case.reference for unit in homework_units(hw).values() for case in unit.cases):
        return references  # nothing stored (the final project: scored by AP, not against the solutions)
    for (gid, name), value in solution_outputs(hw, solutions, lambda case: case.reference).items():
        references[gid][name] = wrap(value)  # tagged, so numpy arrays survive weights_only loading
    return references


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homeworks", nargs="*", default=list(HOMEWORKS))
    args = parser.parse_args(argv)
    for hw in args.homeworks:
        refs = make_references(hw)
        path = references_path(hw)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(refs, path)
        n = sum(len(c) for c in refs.values())
        print(f"wrote {path.relative_to(REPO_ROOT)}: {len(refs)} units, {n} cases "
              f"({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
