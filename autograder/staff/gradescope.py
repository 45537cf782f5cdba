"""Gradescope's entry point (``run_autograder`` in the zip that ``make gradescope`` builds).

    python -m autograder.staff.gradescope [--root /autograder] [--hw retinaface]

Takes the notebooks from ``ROOT/submission`` wherever they are (top level, a sub-folder, renamed
like ``2_model (1).ipynb``), grades every check (hidden ones ``after_due_date``), charging a mistake
once, and always writes ``ROOT/results/results.json``, also when nothing gradable was submitted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from autograder import engine
from autograder.results import gradescope_results
from autograder.units import HOMEWORKS

DEFAULT_ROOT = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def _failure(message: str, started: float) -> dict:
    return {"score": 0.0, "max_score": 0.0, "execution_time": round(time.monotonic() - started, 2),
            "output": message, "tests": []}


def run(root: Path, hw: str, unit_timeout: float = engine.Options.unit_timeout) -> dict:
    """Grade ``root/submission``; the results as Gradescope reads them."""
    options = engine.Options(unit_timeout=unit_timeout, reference_dir=engine.default_reference_dir(hw))
    return gradescope_results(engine.grade(hw, root / "submission", options))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Gradescope's /autograder")
    parser.add_argument("--hw", default=HOMEWORKS[0] if len(HOMEWORKS) == 1 else None,
                        choices=HOMEWORKS, required=len(HOMEWORKS) != 1)
    parser.add_argument("--unit-timeout", type=float, default=engine.Options.unit_timeout)
    args = parser.parse_args(argv)
    results_path = args.root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code = 0
    try:
        results = run(args.root, args.hw, args.unit_timeout)
    except Exception:  # a kit bug: still a results.json that says so, and a failing exit code
        traceback.print_exc()
        results = _failure("The autograder itself failed (not your code); please tell your course staff:\n"
                           + traceback.format_exc()[-1500:], started)
        code = 1
    results_path.write_text(json.dumps(results, indent=2))
    print(results["output"])
    print(f"score {results['score']:g}/{results['max_score']:g}; wrote {results_path}")
    sys.exit(code)


if __name__ == "__main__":
    main()
