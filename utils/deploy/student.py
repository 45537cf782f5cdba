"""The student bundle (``make student-kit HW=<hw>``): outputs/dist/<hw>-student.zip.

Holds the released notebooks, the given packages, the autograder with its public checks only
(hidden tests and cases removed from the source by ``public_only``, the references file cut to the
public cases), requirements.txt, pytest.ini, a README and a Makefile. The reference code the checks
call (``oracles*.py``, ``mistakes*.py``) does not ship: each module is a stub that replays the
answers recorded for the public cases (``autograder.recorded``, ``references/<hw>-oracles.pt.xz``).
Before zipping, the bundle's own grading is imported and compared with the kit's: every public case
and test must be there and nothing hidden; no file may hold a solution marker, a line of a model
answer or of the reference code, the name of a hidden case or test, or a function that passes the
public checks of a graded unit. Any leak stops the build with what leaked and where.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from autograder.recorded import is_reference_module, recordings_path, stub_source
from utils.deploy.bundle import (MIN_SNIPPET_CHARS, REPO_ROOT, SOLUTION_MARKERS, PackagingError,
                                 check_homework, copy_kit, find_text, manifest, render, solution_snippets,
                                 write_zip)
from utils.deploy import implementations
from utils.deploy.public_only import FilterError, filter_source
from utils.homeworks import GIVEN_PACKAGES


def hidden_names(info: dict) -> tuple[set[str], set[str]]:
    """(hidden case names, hidden test titles) of a homework's manifest."""
    cases = {c["name"] for u in info["units"].values() for c in u["cases"] if not c["public"]}
    titles = {t["title"] for t in info["tests"] if not t["public"]}
    return cases, titles


def public_view(info: dict) -> tuple[dict, list]:
    """({unit: public case names}, sorted public (unit, title, points)) of a manifest."""
    cases = {gid: [c["name"] for c in u["cases"] if c["public"]] for gid, u in info["units"].items()}
    tests = sorted((t["unit"], t["title"], t["points"]) for t in info["tests"] if t["public"])
    return cases, tests


def copy_public_grading(hw: str, dest: Path, hidden_cases: set[str], root: Path = REPO_ROOT) -> None:
    """``autograder/<hw>/`` without hidden tests and cases and with its reference code replaced by
    replaying stubs, and the public references and recorded answers only."""
    package = root / "autograder" / hw
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        target = dest / "autograder" / hw / path.relative_to(package)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.parent == package and is_reference_module(path.name):
            target.write_text(stub_source(f"autograder.{hw}.{path.stem}"), encoding="utf-8")
        elif path.suffix == ".py":
            try:
                text, _ = filter_source(path.read_text(encoding="utf-8"), str(path.relative_to(root)),
                                        hidden_cases)
            except FilterError as err:
                raise PackagingError(str(err)) from None
            target.write_text(text, encoding="utf-8")
        else:
            target.write_bytes(path.read_bytes())
    references = torch.load(root / "autograder" / "references" / f"{hw}.pt", weights_only=True)
    public = {unit: {name: value for name, value in by_case.items() if name not in hidden_cases}
              for unit, by_case in references.items()}
    (dest / "autograder" / "references").mkdir(parents=True, exist_ok=True)
    torch.save(public, dest / "autograder" / "references" / f"{hw}.pt")
    recorded = recordings_path(hw).relative_to(REPO_ROOT)
    if not (root / recorded).is_file():
        raise PackagingError(f"{recorded} is missing: run `make references` (it records the reference "
                             f"code's answers the public checks need)")
    shutil.copy2(root / recorded, dest / recorded)


def leaks(hw: str, folder: Path, kit_info: dict, root: Path = REPO_ROOT) -> list[str]:
    """Everything in ``folder`` a student must not see (empty when the bundle is clean)."""
    found = []
    bundle_info = manifest(hw, folder)
    if public_view(bundle_info) != public_view(kit_info):
        found.append("the bundle's public cases or tests differ from the kit's (the filter removed "
                     "a public one)")
    cases, titles = hidden_names(bundle_info)
    found += [f"hidden case still defined: {name!r}" for name in sorted(cases)]
    found += [f"hidden test still defined: {title!r}" for title in sorted(titles)]
    kit_cases, kit_titles = hidden_names(kit_info)
    references = torch.load(folder / "autograder" / "references" / f"{hw}.pt", weights_only=True)
    found += [f"references hold hidden case {unit}/{name}" for unit, by_case in references.items()
              for name in by_case if name in kit_cases]
    # A hidden name leaks as a string literal; the same words in prose ("no faces") are no leak.
    quoted = {f"{q}{name}{q}" for name in kit_cases | kit_titles for q in ('"', "'")}
    found += find_text(folder, set(SOLUTION_MARKERS) | quoted | solution_snippets(hw, root)
                       | reference_lines(hw, root))
    found += implementations.find(hw, folder)  # shipped code that passes a graded unit's public checks
    return found


def reference_lines(hw: str, root: Path = REPO_ROOT) -> set[str]:
    """Lines of the reference code (oracles, mistake models), long enough to be its own, that the
    release, the given packages and the rest of the grading code (which ship on purpose) do not
    contain."""
    package = root / "autograder" / hw
    shipped = "\n".join(p.read_text(encoding="utf-8") for p in package.glob("*.py")
                         if not is_reference_module(p.name))
    given = "\n".join(p.read_text(encoding="utf-8") for p in [
        *(q for name in GIVEN_PACKAGES for q in (root / name).rglob("*.py")),
        *(root / "assignments" / hw).glob("*.ipynb")])
    lines = set()
    for path in package.glob("*.py"):
        if is_reference_module(path.name):
            lines |= {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                      if len(line.strip()) >= MIN_SNIPPET_CHARS and not line.strip().startswith("#")}
    return {line for line in lines if line not in shipped and line not in given
            and json.dumps(line)[1:-1] not in given}


def build(hw: str, out_dir: Path, root: Path = REPO_ROOT) -> Path:
    """Build ``out_dir/<hw>-student.zip``; raises PackagingError on anything that would leak."""
    check_homework(hw, root)
    kit_info = manifest(hw, root)
    hidden_cases, _ = hidden_names(kit_info)
    with tempfile.TemporaryDirectory(prefix="student-kit-") as tmp:
        folder = Path(tmp) / f"{hw}-student"
        copy_kit(hw, folder, root)
        copy_public_grading(hw, folder, hidden_cases, root)
        render("student_README.md", folder / "README.md", hw)
        render("student_Makefile", folder / "Makefile", hw)
        found = leaks(hw, folder, kit_info, root)
        if found:
            raise PackagingError(f"the student bundle of {hw!r} would leak (nothing written):\n  "
                                 + "\n  ".join(found[:40]))
        return write_zip(Path(tmp), out_dir / f"{hw}-student.zip")  # one top-level folder
