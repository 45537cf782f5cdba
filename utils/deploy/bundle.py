"""What both bundles are made of: the kit's files for one homework, templates, the zip, and the
checks that a bundle leaks nothing (solution text, hidden cases and tests).

The kit's own folders are copied as they are (``detector/``, ``data/``, ``utils/`` without this
packaging code and without the other homeworks' parts (``utils.homeworks.given_code``), the grading
core ``autograder/*.py`` and ``autograder/sandbox/``; the Gradescope zip adds ``autograder/staff/``);
homework ``hw`` adds ``assignments/<hw>/``, ``autograder/<hw>/`` and ``autograder/references/<hw>.pt``. Other homeworks' grading is left out,
so the bundle's grader finds exactly one homework.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from utils.homeworks import GIVEN_PACKAGES, given_code

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(__file__).resolve().parent / "templates"
KIT_FILES = ("requirements.txt", "pytest.ini")
GRADING_ROOMS = ("sandbox",)                   # autograder/ sub-folders every bundle ships
STAFF_ROOM = ("staff",)                        # course staff's grading: the Gradescope zip only
NOT_SHIPPED = ("__pycache__", ".ipynb_checkpoints", ".pytest_cache")
# Not part of either bundle: this packaging code, and the release tool (it names the solution markers).
NOT_BUNDLED = (Path("utils") / "deploy", Path("utils") / "release.py")
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "BEGIN MARK SCHEME")
MIN_SNIPPET_CHARS = 25                         # shorter solution lines are too generic to search for
EXECUTABLE = 0o755
ZIP_DATE = (2020, 1, 1, 0, 0, 0)               # fixed member dates: the same kit gives the same zip


class PackagingError(RuntimeError):
    """The bundle cannot be built, or would leak something: says what and where."""


def _shipped(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return (path.is_file() and not any(p in NOT_SHIPPED for p in rel.parts)
            and not any(rel.is_relative_to(p) for p in NOT_BUNDLED) and path.suffix != ".pyc")


def copy_tree(src: Path, dest: Path, root: Path = REPO_ROOT) -> None:
    """Copy the shipped files of ``src`` to ``dest`` (caches and packaging code left out)."""
    for path in sorted(src.rglob("*")):
        if _shipped(path, root):
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def check_homework(hw: str, root: Path = REPO_ROOT) -> None:
    needed = [root / "assignments" / hw, root / "autograder" / hw / "cases.py",
              root / "autograder" / "references" / f"{hw}.pt"]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        known = sorted(p.parent.name for p in (root / "autograder").glob("*/cases.py"))
        raise PackagingError(f"homework {hw!r}: missing {', '.join(missing)} (homeworks with grading: "
                             f"{', '.join(known) or 'none'}; run `make release` and `make references`)")


def copy_kit(hw: str, dest: Path, root: Path = REPO_ROOT, staff: bool = False) -> None:
    """The kit's shared code and homework ``hw``'s release, as the bundles need them: the grading
    core (``autograder/*.py``) and ``autograder/sandbox/``, chosen by folder; ``autograder/staff/``
    only with ``staff`` (the private Gradescope zip)."""
    for path in given_code(root, hw):  # the other homeworks' given code holds this one's answers
        target = dest / path.relative_to(root)
        if path.is_dir():
            copy_tree(path, target, root)
        elif _shipped(path, root):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for name in KIT_FILES:
        shutil.copy2(root / name, dest / name)
    (dest / "autograder").mkdir(parents=True, exist_ok=True)
    for path in sorted((root / "autograder").glob("*.py")):
        shutil.copy2(path, dest / "autograder" / path.name)
    for room in GRADING_ROOMS + (STAFF_ROOM if staff else ()):
        copy_tree(root / "autograder" / room, dest / "autograder" / room, root)
    copy_tree(root / "assignments" / hw, dest / "assignments" / hw, root)


def render(template: str, dest: Path, hw: str, executable: bool = False) -> None:
    """Copy ``templates/<template>`` to ``dest`` with ``{{hw}}`` replaced by the homework's name."""
    text = (TEMPLATES / template).read_text(encoding="utf-8").replace("{{hw}}", hw)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    if executable:
        dest.chmod(EXECUTABLE)


def write_zip(folder: Path, archive: Path) -> Path:
    """Zip ``folder``'s content (paths relative to it, executable bits kept)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_DATE)
                info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    os.replace(tmp, archive)
    return archive


def manifest(hw: str, root: Path) -> dict:
    """``autograder.manifest`` of the kit (or bundle) at ``root``, read in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "autograder.manifest", hw], cwd=root, text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(root)))
    if proc.returncode != 0:
        raise PackagingError(f"{root}: cannot import the grading of {hw!r}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)[hw]


def solution_snippets(hw: str, root: Path = REPO_ROOT) -> set[str]:
    """Lines of the solutions' answers (between the solution markers), long enough to be the model
    answer's own text, that neither the release nor the given packages (which ship on purpose and
    may share a generic line with an answer) contain."""
    given = [p for name in GIVEN_PACKAGES for p in (root / name).rglob("*.py") if _shipped(p, root)]
    released = "\n".join(p.read_text(encoding="utf-8")
                         for p in [*(root / "assignments" / hw).glob("*.ipynb"), *given])
    snippets = set()
    for path in (root / "solutions" / hw).glob("*.ipynb"):
        for c in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for block in re.findall(r"BEGIN SOLUTION(.*?)### END SOLUTION", source, re.S):
                snippets |= {line.strip() for line in block.splitlines()
                             if len(line.strip()) >= MIN_SNIPPET_CHARS and json.dumps(line.strip())[1:-1]
                             not in released and line.strip() not in released}
    return snippets


def text_files(folder: Path) -> dict[str, str]:
    """{relative path: text} of every file of ``folder`` that decodes as UTF-8."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                out[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return out


def find_text(folder: Path, needles: set[str]) -> list[str]:
    """``file: needle`` for every needle found in a text file of ``folder``; notebooks are also
    searched in their JSON-escaped form."""
    found = []
    for rel, text in text_files(folder).items():
        for needle in sorted(needles):
            if needle in text or json.dumps(needle)[1:-1] in text:
                found.append(f"{rel}: {needle[:80]!r}")
    return found
