"""The Gradescope autograder (``make gradescope HW=<hw>``): outputs/dist/<hw>-autograder.zip.

Gradescope unpacks the zip into /autograder/source, runs ``setup.sh`` once to build the image and
``run_autograder`` for each submission. The zip is private (only course staff upload it), so it
holds every check, the full references, the solutions' notebooks (``solutions/<hw>/``) and the
calls the solutions made into their dependencies, with which a unit whose dependency fails is graded
again (a mistake is charged once; ``autograder.replayed``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from utils.deploy.bundle import REPO_ROOT, check_homework, copy_kit, copy_tree, render, write_zip


def build(hw: str, out_dir: Path, root: Path = REPO_ROOT) -> Path:
    """Build ``out_dir/<hw>-autograder.zip`` (setup.sh and run_autograder at the top)."""
    check_homework(hw, root)
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        folder = Path(tmp)
        copy_kit(hw, folder, root, staff=True)
        copy_tree(root / "autograder" / hw, folder / "autograder" / hw, root)
        (folder / "autograder" / "references").mkdir(parents=True, exist_ok=True)
        for name in (f"{hw}.pt", f"{hw}-calls.pt.xz"):  # the references; the calls charge-once replays
            shutil.copy2(root / "autograder" / "references" / name, folder / "autograder" / "references")
        copy_tree(root / "solutions" / hw, folder / "solutions" / hw, root)
        render("gradescope_setup.sh", folder / "setup.sh", hw, executable=True)
        render("gradescope_run_autograder", folder / "run_autograder", hw, executable=True)
        return write_zip(folder, out_dir / f"{hw}-autograder.zip")
