"""Regenerate ``autograder/references/<hw>.pt`` from the solutions (``make references``).

Runs every case of every unit on ``solutions/<hw>/`` through the same sandboxed worker that grades
students, and stores the outputs. Fails, writing nothing, if any solution case fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from autograder.grading import references_path
from autograder.sandbox.supervisor import REPO_ROOT, Sandbox
from autograder.sandbox.transfer import wrap
from autograder.units import HOMEWORKS, homework_units


def make_references(hw: str, solutions: Path = REPO_ROOT / "solutions") -> dict:
    units = homework_units(hw)
    sandbox = Sandbox(hw, solutions / hw, solutions / hw, unit_timeout=600)
    references, failures = {}, []
    try:
        sandbox.start()
        for gid in units:
            run = sandbox.run(gid)
            if run.status != "ok":
                failures.append(f"{gid}: {run.status}: {run.detail}")
                continue
            references[gid] = {}
            for name, result in run.cases.items():
                if result.ok and not units[gid].case(name).reference:
                    continue
                if result.ok:  # stored tagged, so numpy arrays survive weights_only loading
                    references[gid][name] = wrap(result.value)
                else:
                    failures.append(f"{gid} / {name}: {result.kind}: {result.message}")
    finally:
        sandbox.close()
    if failures or sandbox.problems:
        raise SystemExit("the solutions do not run cleanly; references not written:\n  "
                         + "\n  ".join(sandbox.problems + failures))
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
