"""Generated classes of submissions for the batch-grading tests and ``bench.grading``.

Kinds of student, for any homework (the mistakes and attacks are put into the released stubs'
answer cells, so they need nothing homework-specific):

- ``correct``: the solutions; ``stub``: the release untouched;
- ``mistake``: the solutions with one answer cell returning the wrong thing (``None``), or, for
  RetinaFace, the classic IoU without the union;
- ``hostile``: the solutions with one answer cell that loops forever when called, or ends the
  grading process while the notebook loads, or exits when called.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from tests.notebooks import REPO_ROOT, set_answer

KINDS = ("correct", "stub", "mistake", "hostile")
IOU_WITHOUT_UNION = "def jaccard(box_a, box_b):\n    return intersect(box_a, box_b)\n"
# One-line bodies (they replace ``raise NotImplementedError()`` at any indentation).
HOSTILE_BODIES = ("any(iter(int, 1))", "__import__('sys').exit(0)")   # endless loop, exit
EXIT_AT_LOAD = "import os\nos._exit(3)\n"


def answer_cells(hw: str) -> list[tuple[str, str, str]]:
    """(notebook, grade_id, released stub source) of every code answer cell with a ``def``."""
    found = []
    for path in sorted((REPO_ROOT / "assignments" / hw).glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell["metadata"].get("nbgrader", {})
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and meta.get("solution") and "raise NotImplementedError()" in source \
                    and source.lstrip().startswith(("def ", "import", "from")) and "def " in source:
                found.append((path.name, meta["grade_id"], source))
    return found


def make_student(folder: Path, hw: str, kind: str, k: int) -> Path:
    """Write student ``k`` of ``kind`` into ``folder/<hw>/`` (nbgrader's layout); returns folder."""
    source = "assignments" if kind == "stub" else "solutions"
    shutil.copytree(REPO_ROOT / source / hw, folder / hw)
    cells = answer_cells(hw)
    if kind == "mistake":
        nb, gid, stub = cells[k % len(cells)]
        if hw == "retinaface" and k % 2 == 0:
            set_answer(folder / hw / "4_matching_nms.ipynb", "jaccard", IOU_WITHOUT_UNION)
        else:
            set_answer(folder / hw / nb, gid, stub.replace("raise NotImplementedError()", "return None"))
    elif kind == "hostile":
        nb, gid, stub = cells[(3 * k) % len(cells)]
        attack = k % 3
        if attack == 2:
            set_answer(folder / hw / nb, gid, EXIT_AT_LOAD)
        else:
            set_answer(folder / hw / nb, gid, stub.replace("raise NotImplementedError()", HOSTILE_BODIES[attack]))
    return folder


def make_class(root: Path, hw: str, counts: dict[str, int], zipped_every: int = 0) -> list[str]:
    """``root/<student>/`` for each kind and count (every ``zipped_every``-th as ``<student>.zip``);
    returns the students' names, ``<kind>-<k>``."""
    names = []
    for kind in KINDS:
        for k in range(counts.get(kind, 0)):
            name = f"{kind}-{k:02d}"
            folder = make_student(root / name, hw, kind, k)
            if zipped_every and len(names) % zipped_every == zipped_every - 1:
                with zipfile.ZipFile(root / f"{name}.zip", "w") as zf:
                    for nb in sorted(folder.rglob("*.ipynb")):
                        zf.write(nb, f"{name}/{nb.stem} (1).ipynb")
                shutil.rmtree(folder)
            names.append(name)
    return names
