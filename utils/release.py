"""Generate the student release from the solutions, or check that it is in sync.

    python -m utils.release generate [HW ...]   # make release: regenerate assignments/<hw>/
    python -m utils.release check [HW ...]      # make check-release: fail if assignments/ is stale

Both run ``nbgrader generate_assignment --no-db`` (no gradebook database), configured by
``nbgrader_config.py`` (source = solutions, release = assignments). ``check`` generates into a
temporary folder and compares it byte for byte with ``assignments/``; it also refuses a release
that still contains solution or hidden-test markers.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO_ROOT / "solutions"
RELEASE = REPO_ROOT / "assignments"
# Text that must never reach students.
FORBIDDEN_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "BEGIN MARK SCHEME")


def homeworks() -> list[str]:
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and not p.name.startswith("."))


def _nbgrader(hw: str, release_dir: Path) -> None:
    nbgrader = Path(sys.executable).with_name("nbgrader")
    cmd = [str(nbgrader) if nbgrader.exists() else "nbgrader", "generate_assignment", hw, "--no-db",
           "--force", f"--CourseDirectory.release_directory={release_dir}"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nbgrader generate_assignment {hw} failed:\n{proc.stdout}{proc.stderr}")


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")
            if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


def generate(hw: str) -> None:
    """Regenerate ``assignments/<hw>/`` from ``solutions/<hw>/`` (stale files are removed)."""
    target = RELEASE / hw
    if target.exists():
        shutil.rmtree(target)
    _nbgrader(hw, RELEASE)
    print(f"generated {target.relative_to(REPO_ROOT)}/ ({len(_files(target))} files)")


def problems(hw: str) -> list[str]:
    """Differences between ``assignments/<hw>/`` and a fresh generation, and leaked markers."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        _nbgrader(hw, Path(tmp))
        fresh, current = Path(tmp) / hw, RELEASE / hw
        if not current.is_dir():
            return [f"{current.relative_to(REPO_ROOT)}/ does not exist: run `make release`"]
        new, old = _files(fresh), _files(current)
        found += [f"missing from the release: {hw}/{p}" for p in sorted(new - old)]
        found += [f"not generated from solutions/ (stale?): {hw}/{p}" for p in sorted(old - new)]
        found += [f"differs from what solutions/ generates: {hw}/{p}" for p in sorted(new & old)
                  if not filecmp.cmp(fresh / p, current / p, shallow=False)]
    for path in sorted((RELEASE / hw).rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(REPO_ROOT)} contains {m!r}" for m in FORBIDDEN_MARKERS if m in text]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("generate", "check"))
    parser.add_argument("homeworks", nargs="*")
    args = parser.parse_args(argv)
    hws = args.homeworks or homeworks()
    if args.action == "generate":
        for hw in hws:
            generate(hw)
        return
    found = [p for hw in hws for p in problems(hw)]
    if found:
        print("the release is out of sync with solutions/ — run `make release`:\n  " + "\n  ".join(found))
        raise SystemExit(1)
    print(f"release in sync with solutions/: {', '.join(hws)}")


if __name__ == "__main__":
    main()
