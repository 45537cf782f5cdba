"""The kit's layout contract (../shared/DESIGN.md, "Adding a homework"): every homework the grader
finds has its solutions, release, references and detector adapter; grade_ids are unique kit-wide;
the layers import only downwards (data/ and detector/ import nothing of the kit; utils/ never
imports the autograder, the solutions or the release)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autograder.units import HOMEWORKS, homework_units
from utils.detectors import ADAPTERS, adapter
from utils.homeworks import homework

REPO_ROOT = Path(__file__).resolve().parents[1]
# package -> the kit's top-level packages it may import
ALLOWED_IMPORTS = {"data": {"data"}, "detector": {"detector"}, "utils": {"data", "detector", "utils"},
                   # packaging sits above the grader it packages (it never ships in a bundle)
                   "utils/deploy": {"data", "detector", "utils", "autograder"}}
KIT_PACKAGES = {"data", "detector", "utils", "autograder", "bench", "tests", "solutions", "assignments"}


def test_homeworks_are_found_on_disk():
    assert "retinaface" in HOMEWORKS
    assert HOMEWORKS[0] == "retinaface"


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_each_homework_keeps_the_contract(hw):
    assert (REPO_ROOT / "solutions" / hw).is_dir(), f"solutions/{hw}/ is missing"
    assert (REPO_ROOT / "assignments" / hw).is_dir(), f"assignments/{hw}/ is missing: run make release"
    assert (REPO_ROOT / "autograder" / "references" / f"{hw}.pt").is_file(), "run make references"
    if homework(hw).adapter is None:  # the final project trains the other homeworks' detectors: no model of its own
        assert hw not in ADAPTERS and homework(hw).all_given, f"{hw}: no adapter, so it must use every homework's code"
        return
    assert hw in ADAPTERS, f"register utils/detectors/{hw}.py in ADAPTERS"
    module = adapter(hw)
    for name in ("NAME", "CONFIGS", "LITE", "FULL", "DEMO", "NOTEBOOKS", "build_model", "build_detector",
                 "train_model"):
        assert hasattr(module, name), f"utils/detectors/{hw}.py lacks {name}"
    assert module.NAME == hw and module.LITE in module.CONFIGS and module.FULL in module.CONFIGS
    assert "image_size" in module.DEMO
    notebooks = {u.notebook for u in homework_units(hw).values()}
    for nb in notebooks | set(module.NOTEBOOKS):
        assert (REPO_ROOT / "solutions" / hw / nb).is_file(), f"solutions/{hw}/{nb} is missing"


def test_grade_ids_are_unique_across_the_kit():
    seen: dict[str, str] = {}
    for hw in HOMEWORKS:
        for gid in homework_units(hw):
            assert gid not in seen, f"grade_id {gid!r} is used by {seen[gid]} and {hw}"
            seen[gid] = hw


def _kit_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & KIT_PACKAGES


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_layers_import_only_downwards(package):
    inner = [name for name in ALLOWED_IMPORTS if name.startswith(f"{package}/")]  # checked on their own
    wrong = [f"{path.relative_to(REPO_ROOT)} imports {sorted(_kit_imports(path) - ALLOWED_IMPORTS[package])}"
             for path in sorted((REPO_ROOT / package).rglob("*.py"))
             if not any(path.is_relative_to(REPO_ROOT / name) for name in inner)
             and _kit_imports(path) - ALLOWED_IMPORTS[package]]
    assert not wrong, "\n".join(wrong)


def _dotted_imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a.b import c`` gives a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _grading_files(*rooms: str) -> list[Path]:
    autograder = REPO_ROOT / "autograder"
    homeworks = [autograder / hw for hw in HOMEWORKS]
    folders = {"core": [autograder], "sandbox": [autograder / "sandbox"], "homeworks": homeworks,
               "staff": [autograder / "staff"]}
    return sorted(p for room in rooms for folder in folders[room] for p in folder.glob("*.py"))


def test_the_grading_core_and_sandbox_never_import_staff():
    """The student bundle ships the core, the sandbox and the homework folders, never staff/."""
    wrong = [f"{p.relative_to(REPO_ROOT)} imports {sorted(n for n in _dotted_imports(p) if n.startswith('autograder.staff'))}"
             for p in _grading_files("core", "sandbox", "homeworks")
             if any(n.startswith("autograder.staff") for n in _dotted_imports(p))]
    assert not wrong, "\n".join(wrong)


def test_the_autograder_never_imports_bench_or_tests():
    wrong = [f"{p.relative_to(REPO_ROOT)} imports {sorted(_kit_imports(p) & {'bench', 'tests'})}"
             for p in _grading_files("core", "sandbox", "homeworks", "staff") if _kit_imports(p) & {"bench", "tests"}]
    assert not wrong, "\n".join(wrong)


def test_the_autograder_holds_three_rooms_and_the_homeworks():
    """autograder/ = core modules + sandbox/ + staff/ + references/ + one folder per homework."""
    folders = {p.name for p in (REPO_ROOT / "autograder").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {"sandbox", "staff", "references", *HOMEWORKS}, folders


def test_the_registry_names_every_homework_and_its_notebooks():
    """One entry per homework (utils/homeworks.py) and the folders agree with it."""
    from utils.homeworks import NAMES, REGISTRY
    assert HOMEWORKS == NAMES  # the kit grades every registered homework, in course order
    on_disk = {p.parent.name for p in (REPO_ROOT / "autograder").glob("*/cases.py")}
    assert on_disk == set(NAMES), f"autograder/<hw>/ without a registry entry: {sorted(on_disk - set(NAMES))}"
    for entry in REGISTRY:
        for root in ("solutions", "assignments"):
            found = sorted(p.name for p in (REPO_ROOT / root / entry.name).glob("*.ipynb"))
            assert found == sorted(entry.notebooks), f"{root}/{entry.name}/ holds {found}, the registry {entry.notebooks}"
        graded = {u.notebook for u in homework_units(entry.name).values()}
        assert graded <= set(entry.notebooks), f"{entry.name}: units in {sorted(graded - set(entry.notebooks))}"
        if entry.adapter is not None:  # the final project has no detector of its own
            assert set(adapter(entry.name).NOTEBOOKS) <= set(entry.notebooks)


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_graded_test_modules_declare_their_own_homework(hw):
    """``HW`` of autograder/<hw>/test_*.py is the folder's name (the grader checks it, not trusts it)."""
    for path in sorted((REPO_ROOT / "autograder" / hw).glob("test_*.py")):
        declared = [node.value.value for node in ast.parse(path.read_text()).body
                    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HW" for t in node.targets)
                    and isinstance(node.value, ast.Constant)]
        assert declared in ([hw], []), f"{path.relative_to(REPO_ROOT)}: HW = {declared}"


def test_the_readme_names_every_forbidden_library_op():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [f"{hw}/{gid}: {name}" for hw in HOMEWORKS for gid, unit in homework_units(hw).items()
               for name in unit.forbidden if f"| {hw} | `{gid}` |" not in readme or f"`{name}`" not in readme]
    assert not missing, "README's table of forbidden ops is out of date:\n" + "\n".join(missing)
