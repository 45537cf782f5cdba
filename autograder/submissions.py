"""Finding a student's notebooks wherever they are, and the students of a class.

A submission arrives in many shapes: notebooks at the top of a folder, in a sub-folder, inside a
zip, renamed by a browser or by Jupyter (``2_model (1).ipynb``, ``2_model-Copy1.ipynb``). Each
released notebook is matched to the submitted notebook that holds the most of its nbgrader
``grade_id``s (the cells the student cannot rename); the file name only breaks ties. The chosen
files are staged as ``<dest>/<hw>/<released name>``, the layout the grader expects. A homework
that takes an uploaded file beside its notebooks (``Homework.upload``: the final project's
``challenge.pt``) also gets that file and the notebook folders beside it (``<model>/*.ipynb``).

A class (``python -m autograder.staff.batch --submissions DIR``) is one entry per student in ``DIR``: a
folder (nbgrader's ``submitted/<student>/<hw>/`` layout or any other) or a ``<student>.zip``.
"""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from utils.homeworks import NAMES, homework

MAX_NOTEBOOK_BYTES = 50 * 2**20       # a notebook larger than this is not read (outputs, images)
MAX_UPLOAD_BYTES = 64 * 2**20        # an uploaded file beside the notebooks (challenge.pt: 50 MB allowed)
MAX_ZIP_NOTEBOOKS = 200               # notebooks read from one student's zip
IGNORED_PARTS = (".ipynb_checkpoints", "__MACOSX")
_COPY_SUFFIX = re.compile(r"([\s_\-]*(\(\d+\)|copy\d*))+$", re.IGNORECASE)


class SubmissionError(Exception):
    """A user mistake (a wrong folder, no notebooks): one line that says what was expected."""


@dataclass
class Staged:
    """The notebooks of one submission, copied into ``folder`` under their released names."""

    folder: Path
    chosen: dict[str, str] = field(default_factory=dict)    # released name -> submitted path
    notes: list[str] = field(default_factory=list)


def grade_ids(path: Path) -> set[str]:
    """The nbgrader grade_ids of a notebook's cells; empty for an unreadable or oversized file."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return set()
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return {c["metadata"]["nbgrader"]["grade_id"] for c in cells
                if isinstance(c, dict) and isinstance(c.get("metadata", {}).get("nbgrader"), dict)
                and isinstance(c["metadata"]["nbgrader"].get("grade_id"), str)}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return set()


def name_key(file_name: str) -> str:
    """``2_model (1).ipynb`` / ``2_Model-Copy1.ipynb`` -> ``2_model``."""
    stem = file_name[:-len(".ipynb")] if file_name.lower().endswith(".ipynb") else file_name
    return _COPY_SUFFIX.sub("", stem.strip()).lower()


def find_notebooks(root: Path) -> list[Path]:
    """Every ``.ipynb`` under ``root`` (any depth), skipping checkpoints and macOS metadata."""
    return sorted(p for p in root.rglob("*.ipynb")
                  if p.is_file() and not any(part in IGNORED_PARTS or part.startswith("._")
                                             for part in p.relative_to(root).parts))


def released_notebooks(release: Path) -> dict[str, set[str]]:
    """{released notebook name: its grade_ids} for ``release`` (e.g. ``assignments/<hw>/``)."""
    return {p.name: grade_ids(p) for p in sorted(release.glob("*.ipynb"))}


def match_notebooks(candidates: list[Path], release: dict[str, set[str]]) -> dict[str, Path]:
    """{released name: submitted notebook}: most shared grade_ids first (counting only those no
    other released notebook has: two notebooks may share a given cell's id), then the same name,
    then the most recently modified file. A candidate is used for one released notebook at most."""
    ids = {c: grade_ids(c) for c in candidates}
    chosen: dict[str, Path] = {}
    for name, all_ids in release.items():
        wanted = all_ids - set().union(set(), *(other for n, other in release.items() if n != name))
        ranked = []
        for c in candidates:
            if c in chosen.values():
                continue
            shared = len(ids[c] & wanted)
            same_name = name_key(c.name) == name_key(name)
            if shared or same_name:
                ranked.append((shared, same_name, c.name == name, c.stat().st_mtime, str(c), c))
        if ranked:
            chosen[name] = max(ranked)[-1]
    return chosen


def stage(source: Path, release: Path, dest: Path) -> Staged:
    """Copy the notebooks found under ``source`` into ``dest`` under their released names (the
    folder name of ``release`` is the homework: ``dest/<hw>/``). Raises SubmissionError when no
    notebook of the homework is found."""
    hw = release.name
    candidates = find_notebooks(source)
    chosen = match_notebooks(candidates, released_notebooks(release))
    if not chosen:
        found = ", ".join(p.name for p in candidates[:5]) or "no .ipynb files at all"
        raise SubmissionError(f"{source}: no notebook of homework {hw!r} found (found: {found})")
    staged = Staged(dest / hw)
    staged.folder.mkdir(parents=True, exist_ok=True)
    for name, path in chosen.items():
        shutil.copyfile(path, staged.folder / name)
        where = path.relative_to(source).as_posix()
        staged.chosen[name] = where
        if path.name != name:
            staged.notes.append(f"graded {where!r} as {name}")
    missing = sorted(set(released_notebooks(release)) - set(chosen))
    if missing:
        staged.notes.append(f"not submitted: {', '.join(missing)}")
    if hw in NAMES and homework(hw).upload:
        stage_upload(source, homework(hw).upload, staged)
    return staged


def stage_upload(source: Path, name: str, staged: Staged) -> None:
    """Copy the uploaded file ``name`` (the shallowest one under ``source``; links are not
    followed) into ``staged.folder`` with the notebooks of the folders beside it
    (``<folder>/*.ipynb``, e.g. the chosen detector's homework notebooks)."""
    found = sorted((p for p in source.rglob(name) if p.is_file() and not p.is_symlink()
                    and not any(part in IGNORED_PARTS for part in p.relative_to(source).parts)),
                   key=lambda p: (len(p.parts), str(p)))
    if not found:
        staged.notes.append(f"no {name} in the submission")
        return
    upload = found[0].parent
    size = found[0].stat().st_size
    if size > MAX_UPLOAD_BYTES:  # not copied: the unit then finds no file, the note says why
        staged.notes.append(f"{found[0].relative_to(source).as_posix()}: {size / 1e6:.0f} MB, not read "
                            f"(the limit is 50 MB)")
        return
    shutil.copyfile(found[0], staged.folder / name)
    staged.chosen[name] = found[0].relative_to(source).as_posix()
    for folder in sorted(upload.iterdir()):
        if folder.is_dir() and not folder.is_symlink() and folder.name not in IGNORED_PARTS \
                and (upload != staged.folder.parent or folder.name != staged.folder.name):
            for nb in sorted(folder.glob("*.ipynb")):
                if nb.is_file() and not nb.is_symlink() and nb.stat().st_size <= MAX_NOTEBOOK_BYTES:
                    (staged.folder / folder.name).mkdir(exist_ok=True)
                    shutil.copyfile(nb, staged.folder / folder.name / nb.name)


def extract_notebooks(archive: Path, dest: Path) -> Path:
    """Extract only the ``.ipynb`` members of a zip into ``dest`` (no absolute or ``..`` paths, no
    member over MAX_NOTEBOOK_BYTES), and the uploaded files a homework takes beside its notebooks
    (``Homework.upload``, up to MAX_UPLOAD_BYTES). Raises SubmissionError for a file that is not a zip."""
    uploads = {homework(name).upload for name in NAMES if homework(name).upload}
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and (
                (m.filename.lower().endswith(".ipynb") and m.file_size <= MAX_NOTEBOOK_BYTES)
                or (Path(m.filename).name in uploads and m.file_size <= MAX_UPLOAD_BYTES))]
            for k, member in enumerate(members[:MAX_ZIP_NOTEBOOKS]):
                parts = [p for p in Path(member.filename).parts if p not in ("", ".", "..", "/")]
                target = dest.joinpath(*parts) if parts else dest / f"notebook{k}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise SubmissionError(f"{archive}: not a readable zip file ({err})") from None
    return dest


@dataclass(frozen=True)
class Student:
    name: str
    path: Path          # a folder, or a .zip file

    @property
    def is_zip(self) -> bool:
        return self.path.suffix.lower() == ".zip"


def students_in(submissions: Path) -> list[Student]:
    """The students of a class folder: one sub-folder or ``.zip`` each (``DIR/submitted/`` is used
    when ``DIR`` is an nbgrader course folder). Raises SubmissionError for a wrong folder."""
    if not submissions.exists():
        raise SubmissionError(f"--submissions {submissions}: no such folder (expected a folder with "
                              f"one sub-folder or .zip per student, e.g. nbgrader's submitted/)")
    if not submissions.is_dir():
        raise SubmissionError(f"--submissions {submissions}: is a file, not a folder (expected a "
                              f"folder with one sub-folder or .zip per student)")
    if (submissions / "submitted").is_dir():
        submissions = submissions / "submitted"
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith((".", "_")))
    if any(p.suffix.lower() == ".ipynb" for p in entries):
        raise SubmissionError(f"--submissions {submissions}: holds notebooks directly, so it looks like "
                              f"one student's submission; pass the folder that holds one folder or "
                              f".zip per student")
    students = [Student(p.name if p.is_dir() else p.stem, p) for p in entries
                if p.is_dir() or p.suffix.lower() == ".zip"]
    if not students:
        raise SubmissionError(f"--submissions {submissions}: empty (expected one sub-folder or .zip "
                              f"per student, e.g. submitted/<student>/<hw>/*.ipynb)")
    if not any(s.is_zip or find_notebooks(s.path) for s in students):
        raise SubmissionError(f"--submissions {submissions}: no .ipynb notebook in any of its "
                              f"{len(students)} entries (a mistyped folder?)")
    return students
