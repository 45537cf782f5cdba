"""The final project's grading: the hidden set, the sandboxed detector run, refusals, the leaderboard.

A tiny hidden set (4 pictures per split, a test seed, a temporary cache) keeps this file to about a
minute: every refusal still goes through the confined runner, as a real upload does.
"""
import csv
import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from autograder import feedback as fb
from autograder.results import OK, Report, gradescope_results
from autograder.sandbox import challenge_runner
from autograder.staff import challenge as grading
from autograder.staff import challenge_baselines, challenge_class, class_report
from autograder.staff import hidden_set
from utils.challenge import FILE_NAME, pack
from utils.deploy.bundle import copy_kit
from utils.detectors import load_model

IMAGES = 4
TEST_SEED = 1          # with 4 pictures, both splits have faces of every setting
LEADERBOARD = ("AP hard", "AP medium", "AP easy", "images/s", "parameters")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("hidden")
    for name in hidden_set.SPLITS:
        hidden_set.render(name, IMAGES, root, TEST_SEED)
    return root


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    """A packed RetinaFace lite with its initial (random) weights, the solutions' notebooks beside it."""
    root = tmp_path_factory.mktemp("upload")
    torch.save(load_model("retinaface", "mobilenet0.25", "solutions", seed=0).state_dict(), root / "w.pt")
    pack("retinaface", None, root / "w.pt", root / "up", impl="solutions")
    return root / "up"


def _grade(source, cache, **kw):
    return grading.grade_challenge(source, IMAGES, cache, seed=TEST_SEED, **kw)


def test_hidden_splits_are_cached_deterministic_and_named_without_the_seed(cache, tmp_path):
    first = {n: hidden_set.render(n, IMAGES, cache, TEST_SEED) for n in hidden_set.SPLITS}
    assert all((s.root / hidden_set.DONE).is_file() for s in first.values())
    secret = hidden_set.render("similar", 1, tmp_path / "secret", hidden_set.SECRET_SEED)
    assert str(hidden_set.SECRET_SEED) not in str(secret.root.relative_to(tmp_path))
    again = hidden_set.render("similar", IMAGES, tmp_path, TEST_SEED)          # rendered afresh
    names = sorted(p.relative_to(again.images) for p in again.images.rglob("*.jpg"))
    assert names == sorted(p.relative_to(first["similar"].images) for p in first["similar"].images.rglob("*.jpg"))
    for name in names:
        assert (again.images / name).read_bytes() == (first["similar"].images / name).read_bytes()
    other = hidden_set.render("similar", IMAGES, tmp_path, TEST_SEED + 1)
    assert other.root != again.root
    assert (first["shifted"].ground_truth / "wider_hard_val.mat").is_file()


def test_secret_seed_comes_from_the_staff_environment(monkeypatch):
    monkeypatch.delenv(hidden_set.SEED_ENV, raising=False)
    assert hidden_set.secret_seed() == hidden_set.SECRET_SEED
    monkeypatch.setenv(hidden_set.SEED_ENV, "77")
    assert hidden_set.secret_seed() == 77
    monkeypatch.setenv(hidden_set.SEED_ENV, "seven")
    with pytest.raises(ValueError, match="expected an integer"):
        hidden_set.secret_seed()


def test_seed_is_in_no_student_bundle_nor_in_the_runner_view(tmp_path):
    seed = str(hidden_set.SECRET_SEED)
    for hw in ("retinaface", "tinaface"):
        dest = tmp_path / hw
        copy_kit(hw, dest)                                    # what every student bundle ships of the kit
        assert not (dest / "autograder" / "staff").exists()
        for path in dest.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".txt", ".json"):
                assert seed not in path.read_text(encoding="utf-8", errors="ignore"), path
    staff = copy_kit.__globals__["REPO_ROOT"] / "autograder" / "staff"
    view = challenge_runner.kit_view(copy_kit.__globals__["REPO_ROOT"])
    assert all(staff != p and staff not in p.parents and p not in staff.parents for p in view)
    assert not any(p.name in ("outputs", "solutions", "references") for p in view)


def test_random_lite_model_scores_low_without_crash(upload, cache):
    report = _grade(upload, cache)
    results = gradescope_results(report)
    assert [t["visibility"] for t in results["tests"]] == [
        "visible" if t.split == grading.VISIBLE_SPLIT else "after_due_date" for t in grading.THRESHOLDS]
    assert results["max_score"] == sum(t.points for t in grading.THRESHOLDS)
    assert all("AP easy / medium / hard" in t["output"] for t in results["tests"]), results["tests"]
    assert results["score"] < results["max_score"]
    board = {e["name"]: e for e in results["leaderboard"]}
    assert tuple(board) == LEADERBOARD
    assert all(0.0 <= board[k]["value"] < 0.2 for k in LEADERBOARD[:3])
    assert board["images/s"]["value"] > 0 and board["parameters"]["value"] > 100_000
    assert board["parameters"]["order"] == "asc" and board["AP hard"]["order"] == "desc"
    json.dumps(results)                                       # results.json as written


def _payload(upload: Path) -> dict:
    return torch.load(upload / FILE_NAME, weights_only=True)


def _variant(upload: Path, dest: Path, change) -> Path:
    """A copy of the upload whose challenge.pt is ``change(payload)`` (a dict) or raw bytes."""
    (dest / "retinaface").mkdir(parents=True)
    for nb in (upload / "retinaface").glob("*.ipynb"):
        (dest / "retinaface" / nb.name).write_bytes(nb.read_bytes())
    value = change(_payload(upload))
    if isinstance(value, bytes):
        (dest / FILE_NAME).write_bytes(value)
    elif value is not None:
        torch.save(value, dest / FILE_NAME)
    return dest


def _first_key(p):
    return next(iter(p["state_dict"]))


def _nan(p):
    key = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][key] = p["state_dict"][key].clone().fill_(math.nan)
    return p


REFUSALS = {
    "no file": (lambda p: None, "no challenge.pt in the upload"),
    "unreadable": (lambda p: b"not a pickle at all", "not loadable with torch.load(weights_only=True)"),
    "unknown model": (lambda p: dict(p, model="yolo"), "unknown model 'yolo'"),
    "unknown config": (lambda p: dict(p, cfg="huge"), "unknown config 'huge'"),
    "missing key": (lambda p: dict(p, state_dict={k: v for k, v in p["state_dict"].items()
                                                  if k != _first_key(p)}), "missing key"),
    "wrong shape": (lambda p: dict(p, state_dict=dict(p["state_dict"], **{_first_key(p): torch.zeros(2, 2)})),
                    "in the file"),
    "nan weights": (_nan, "NaN"),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_each_refusal_scores_zero_with_its_message(name, upload, cache, tmp_path):
    change, message = REFUSALS[name]
    source = _variant(upload, tmp_path / "up", change)
    results = gradescope_results(_grade(source, cache))
    assert results["score"] == 0 and results["max_score"] > 0
    assert all(message in t["output"] for t in results["tests"]), results["tests"][0]["output"]
    assert results["leaderboard"][0]["value"] == 0


def test_too_large_and_too_slow_score_zero(upload, cache, tmp_path):
    big = _variant(upload, tmp_path / "big", lambda p: p)
    with open(big / FILE_NAME, "r+b") as f:
        f.truncate(60_000_000)                                   # sparse: 60 MB on paper
    results = gradescope_results(_grade(big, cache))
    assert results["score"] == 0 and all("too large" in t["output"] for t in results["tests"])
    report = _grade(upload, cache, time_limit=2.0)
    assert all(c.kind == fb.TIMEOUT and "too slow" in c.feedback for c in report.checks)
    assert report.total()[0] == 0


def test_points_follow_the_thresholds():
    run = grading.Run("ok", seconds=1.0)
    scores = {s: {"ap": {"easy": 0.9, "medium": 0.8, "hard": 0.40}, "images": 10} for s in hidden_set.SPLITS}
    checks = grading.checks_from(run, scores)
    assert [c.kind == OK for c in checks] == [t.min_ap <= 0.40 for t in grading.THRESHOLDS]
    assert all(f">= {t.min_ap:.2f}" in c.title for c, t in zip(checks, grading.THRESHOLDS))


def test_gradebook_and_class_summary_carry_the_leaderboard(tmp_path):
    def report(hard, speed):
        run = grading.Run("ok", seconds=8 / speed)
        scores = {s: {"ap": {"easy": 0.9, "medium": 0.8, "hard": hard}, "images": 4} for s in hidden_set.SPLITS}
        r = Report(grading.HW, grading.checks_from(run, scores), [])
        r.leaderboard = grading.leaderboard(scores, run, 1000)
        return dict(r.to_dict(), status="graded")

    reports = {"ann": report(0.40, 2.0), "bob": report(0.60, 1.0), "cy": dict(report(0.1, 1.0), leaderboard=None)}
    rows = class_report.gradebook(tmp_path / "gradebook.csv", reports, [grading.UNIT], [], {})
    with open(tmp_path / "gradebook.csv", newline="") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert list(book["ann"])[2:8] == ["total", *LEADERBOARD]
    assert book["bob"]["AP hard"] == "0.6" and book["ann"]["images/s"] == "2" and book["cy"]["AP hard"] == ""
    text = class_report.summary(tmp_path, rows, reports, [grading.UNIT], 10, {}).read_text()
    board = text.split("## Leaderboard", 1)[1].splitlines()
    assert board[2].startswith("| rank | student | AP hard |")
    assert board[4].startswith("| 1 | bob | 0.6 |") and board[5].startswith("| 2 | ann | 0.4 |")


SNOOP = '''
import pathlib, utils
_root = pathlib.Path(utils.__file__).resolve().parents[1]
for _rel in ("autograder/staff/hidden_set.py", "outputs/challenge-hidden", "autograder/references"):
    _readable = True
    try:
        _p = _root / _rel
        _p.read_bytes() if _p.is_file() else sorted(_p.iterdir())
    except OSError:
        _readable = False
    if _readable:
        raise RuntimeError(f"LEAK: {_rel} is readable")    # the model is then never built
'''
SNOOPED = ("autograder/staff/hidden_set.py", "outputs/challenge-hidden", "autograder/references")


def test_upload_code_cannot_read_the_seed_the_hidden_set_or_references(upload, cache, tmp_path):
    """An answer cell that tries to read the staff folder (the seed), the cached hidden set and the
    references while the notebooks load, and refuses to build the model if it can: the run succeeds."""
    root = Path(hidden_set.__file__).resolve().parents[2]
    (root / "outputs" / "challenge-hidden").mkdir(parents=True, exist_ok=True)
    assert all((root / rel).exists() for rel in SNOOPED)             # readable here, outside the sandbox
    source = _variant(upload, tmp_path / "up", lambda p: p)
    path = source / "retinaface" / "2_model.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "retinaface")
    cell["source"] = SNOOP + "".join(cell["source"])
    path.write_text(json.dumps(nb))
    pictures = {n: hidden_set.render(n, IMAGES, cache, TEST_SEED).images for n in hidden_set.SPLITS}
    run = grading.run_detector(source, pictures)
    assert run.status == "ok" and run.note == "", (run.status, run.message, run.note)
    assert "LEAK" not in run.log + run.message


def test_class_grading_and_gradescope_views(upload, cache, tmp_path, monkeypatch):
    """Three students (an upload nested in a folder, a zip without challenge.pt, nothing) and one
    Gradescope run: the same results.json pipeline, the gradebook columns and the leaderboard."""
    monkeypatch.setenv(hidden_set.SEED_ENV, str(TEST_SEED))          # the test's small hidden set
    class_dir = tmp_path / "submitted"
    shutil.copytree(upload, class_dir / "ann" / "upload")
    (class_dir / "cy").mkdir()
    with zipfile.ZipFile(class_dir / "bob.zip", "w") as zf:
        for nb in (upload / "retinaface").glob("*.ipynb"):
            zf.write(nb, f"upload/retinaface/{nb.name}")
        zf.writestr("../evil.py", "print('never extracted')")
    out = tmp_path / "grades"
    summary = challenge_class.grade_class(class_dir, out, jobs=2, images=IMAGES, cache=cache)
    with open(out / "gradebook.csv", newline="") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert set(book) == {"ann", "bob", "cy"} and all(r["challenge"] == "0" for r in book.values())
    assert float(book["ann"]["parameters"]) > 100_000 and book["bob"]["parameters"] == "0"
    bob = json.loads((out / "students" / "bob" / "results.json").read_text())
    assert "no challenge.pt in the upload" in bob["tests"][0]["output"] and len(bob["leaderboard"]) == 5
    assert not (tmp_path / "evil.py").exists()
    assert "## Leaderboard" in summary.read_text()

    root = tmp_path / "autograder"
    shutil.copytree(class_dir / "cy", root / "submission")
    assert challenge_class.main(["gradescope", "--root", str(root), "--images", str(IMAGES),
                                 "--cache", str(cache)]) == 0
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and results["max_score"] == 10 and "leaderboard" in results


def test_staff_baselines_on_the_hidden_splits(cache, tmp_path, monkeypatch):
    """utils.compare's baselines on each hidden split (the kit's demo models and the missing
    packages skipped with their reason); the public RetinaFace where ../shared/data has it."""
    monkeypatch.setenv(hidden_set.SEED_ENV, str(TEST_SEED))
    written = challenge_baselines.run(tmp_path, IMAGES, cache, models=())
    assert set(written) == set(hidden_set.SPLITS)
    for name, path in written.items():
        data = json.loads(path.with_name("baselines.json").read_text())
        assert data["images"] == IMAGES and (path.parent / "baselines_pr_curves.png").is_file()
        if challenge_baselines.PUBLIC_WEIGHTS.is_file():
            assert [r["name"] for r in data["rows"]][:1] in (["haar"], ["retinaface-public"])


def test_malformed_predictions_are_dropped_not_fatal(cache):
    splits = {n: hidden_set.render(n, IMAGES, cache, TEST_SEED) for n in hidden_set.SPLITS}
    name = next(splits["similar"].images.rglob("*.jpg"))
    good = torch.tensor([[10.0, 10.0, 20.0, 20.0, 0.9]], dtype=torch.float64)
    bad = torch.tensor([[math.nan, 1, 2, 3, 0.5], [1, 2, 3, 4, math.inf]], dtype=torch.float64)
    predictions = {"similar": {name.parent.name: {name.stem: torch.cat([good, bad]), "x": "text",
                                                  "y": torch.zeros(7)}, "junk": 3}}
    scores = grading.score_splits(predictions, splits)
    assert set(scores) == set(hidden_set.SPLITS)
    assert all(0.0 <= ap <= 1.0 for s in scores.values() for ap in s["ap"].values())
