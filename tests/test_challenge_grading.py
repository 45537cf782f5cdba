"""The final project's grading, through the one pipeline every view uses (``autograder.engine``):
the hidden set, the confined detector run, refusals, published weights, the leaderboard.

A tiny hidden set (4 pictures per split, a test seed, a temporary cache: ``hidden_set``'s defaults
are read at each call, so the scoring side of an in-process grade uses them) keeps this file to a
few minutes; every upload still runs in the grading worker, as a real one does.
"""
import csv
import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from autograder import engine
from autograder import feedback as fb
from autograder.grading import graded_tests
from autograder.results import Report, gradescope_results
from autograder.sandbox.isolation import kit_view
from autograder.sandbox.supervisor import Sandbox
from autograder.staff import batch, challenge_baselines, class_report, gradescope, hidden_set
from tests.notebooks import REPO_ROOT
from tests.trained_upload import PUBLIC_RETINAFACE, fine_tuned_retinaface, needs_checkpoint
from utils.challenge import FILE_NAME, ChallengeError, pack, validate
from utils.deploy.bundle import copy_kit
from utils.detectors import load_model

HW = "challenge"
IMAGES = 4
TEST_SEED = 1          # with 4 pictures, both splits have faces of every setting
LEADERBOARD = ("AP hard", "AP medium", "AP easy", "images/s", "parameters")
NOTEBOOK = REPO_ROOT / "solutions" / HW / "1_final_project.ipynb"


@pytest.fixture(scope="module", autouse=True)
def small_hidden_set(tmp_path_factory):
    """Every hidden split of this module: 4 pictures from the test seed, in a temporary cache."""
    cache = tmp_path_factory.mktemp("hidden")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hidden_set, "IMAGES_PER_SPLIT", IMAGES)
        mp.setattr(hidden_set, "CACHE_ROOT", cache)
        mp.setenv(hidden_set.SEED_ENV, str(TEST_SEED))
        hidden_set.render_all()
        yield cache


def _submission(dest: Path, weights: Path | None = None, payload=None) -> Path:
    """A student's folder: the solution's notebook and a packed RetinaFace lite (``weights``, default
    its initial random weights), or ``payload`` written as challenge.pt as it is (dict or bytes)."""
    dest.mkdir(parents=True)
    shutil.copy(NOTEBOOK, dest / NOTEBOOK.name)
    if weights is None:
        weights = dest.parent / f"{dest.name}-random.pt"
        torch.save(load_model("retinaface", "mobilenet0.25", "solutions", seed=0).state_dict(), weights)
    pack("retinaface", "mobilenet0.25", weights, dest, impl="solutions")
    if isinstance(payload, bytes):
        (dest / FILE_NAME).write_bytes(payload)
    elif payload is not None:
        torch.save(payload, dest / FILE_NAME)
    return dest


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    return _submission(tmp_path_factory.mktemp("upload") / "alice")


def _grade(source: Path) -> Report:
    return engine.grade(HW, source, engine.Options(reference_dir=engine.default_reference_dir(HW)))


def test_hidden_splits_are_cached_deterministic_and_named_without_the_seed(small_hidden_set, tmp_path):
    first = hidden_set.render_all()
    assert all((s.root / hidden_set.DONE).is_file() and s.root.parent == small_hidden_set for s in first.values())
    secret = hidden_set.render("similar", 1, tmp_path / "secret", hidden_set.SECRET_SEED)
    assert str(hidden_set.SECRET_SEED) not in str(secret.root.relative_to(tmp_path))
    again = hidden_set.render("similar", IMAGES, tmp_path, TEST_SEED)          # rendered afresh
    names = sorted(p.relative_to(again.images) for p in again.images.rglob("*.jpg"))
    assert names == sorted(p.relative_to(first["similar"].images) for p in first["similar"].images.rglob("*.jpg"))
    for name in names:
        assert (again.images / name).read_bytes() == (first["similar"].images / name).read_bytes()
    assert hidden_set.render("similar", IMAGES, tmp_path, TEST_SEED + 1).root != again.root
    assert (first["shifted"].ground_truth / "wider_hard_val.mat").is_file()


def test_secret_seed_comes_from_the_staff_environment(monkeypatch):
    monkeypatch.delenv(hidden_set.SEED_ENV, raising=False)
    assert hidden_set.secret_seed() == hidden_set.SECRET_SEED
    monkeypatch.setenv(hidden_set.SEED_ENV, "77")
    assert hidden_set.secret_seed() == 77
    monkeypatch.setenv(hidden_set.SEED_ENV, "seven")
    with pytest.raises(ValueError, match="expected an integer"):
        hidden_set.secret_seed()


def test_seed_is_in_no_student_bundle_nor_in_the_worker_view(tmp_path):
    seed = str(hidden_set.SECRET_SEED)
    for hw in ("retinaface", HW):
        dest = tmp_path / hw
        copy_kit(hw, dest)                                    # what every student bundle ships of the kit
        assert not (dest / "autograder" / "staff").exists()
        for path in dest.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".txt", ".json"):
                assert seed not in path.read_text(encoding="utf-8", errors="ignore"), path
    staff = REPO_ROOT / "autograder" / "staff"
    view = kit_view(REPO_ROOT, HW)
    assert all(staff != p and staff not in p.parents and p not in staff.parents for p in view)
    assert not any(p.name in ("outputs", "solutions", "references", "checks.py") for p in view)


def test_random_lite_model_scores_low_with_the_leaderboard(upload):
    report = _grade(upload)
    results = gradescope_results(report)
    titles = [t.graded.title for t in graded_tests(HW)]
    assert [t["name"] for t in results["tests"][:-1]] == [f"challenge: {t}" for t in titles]
    assert [t["visibility"] for t in results["tests"][:-1]] == ["visible"] * 4 + ["after_due_date"] * 2
    assert results["tests"][-1]["visibility"] == "hidden"                          # the staff review
    assert results["max_score"] == 12 and results["score"] == 0, results["tests"]
    assert all("AP easy / medium / hard" in t["output"] for t in results["tests"][:-1]), results["tests"]
    assert "Checks on hidden data shown now: 0 / 6 points." in results["output"]
    assert "hidden pictures of split 'similar'" in results["output"]           # the AP behind the visible tests
    assert "split 'shifted'" not in results["output"]                            # shown after the due date only
    board = {e["name"]: e for e in results["leaderboard"]}
    assert tuple(board) == LEADERBOARD
    assert all(0.0 <= board[k]["value"] < 0.2 for k in LEADERBOARD[:3])
    assert board["images/s"]["value"] > 0 and board["parameters"]["value"] > 100_000
    assert board["parameters"]["order"] == "asc" and board["AP hard"]["order"] == "desc"
    assert set(report.curves) == {"easy", "medium", "hard"} and len(report.curves["hard"]["recall"]) > 1
    json.dumps(results), json.dumps(report.to_dict())                          # results.json, report.json


def _payload(upload: Path) -> dict:
    return torch.load(upload / FILE_NAME, weights_only=True)


def _first_key(p):
    return next(iter(p["state_dict"]))


def _nan(p):
    key = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][key] = p["state_dict"][key].clone().fill_(math.nan)
    return p


REFUSALS = {
    "unreadable": (lambda p: b"not a pickle at all", "not loadable with torch.load(weights_only=True)"),
    "unknown model": (lambda p: dict(p, model="yolo"), "unknown model 'yolo'"),
    "unknown config": (lambda p: dict(p, cfg="huge"), "unknown config 'huge'"),
    "missing key": (lambda p: dict(p, state_dict={k: v for k, v in p["state_dict"].items()
                                                  if k != _first_key(p)}), "missing key"),
    "wrong shape": (lambda p: dict(p, state_dict=dict(p["state_dict"], **{_first_key(p): torch.zeros(2, 2)})),
                    "in the file"),
    "nan weights": (_nan, "NaN"),
}


def _scores_zero_saying(report: Report, message: str) -> dict:
    results = gradescope_results(report)
    graded = [t for t in results["tests"] if t["max_score"]]
    assert results["score"] == 0 and results["max_score"] == 12
    assert all(message in t["output"] for t in graded), graded[0]["output"]
    assert results["leaderboard"][0]["value"] == 0 and results["leaderboard"][3]["value"] == 0
    return results


@pytest.mark.parametrize("name", REFUSALS)
def test_each_refusal_scores_zero_with_its_message(name, upload, tmp_path):
    change, message = REFUSALS[name]
    _scores_zero_saying(_grade(_submission(tmp_path / "bob", payload=change(_payload(upload)))), message)


def test_no_upload_too_large_and_too_slow_score_zero(upload, tmp_path, monkeypatch):
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    shutil.copy(NOTEBOOK, nothing / NOTEBOOK.name)
    _scores_zero_saying(_grade(nothing), "no challenge.pt beside the notebook")
    big = _submission(tmp_path / "big")
    with open(big / FILE_NAME, "r+b") as f:
        f.truncate(60_000_000)                                   # sparse: 60 MB on paper
    _scores_zero_saying(_grade(big), "too large")
    # A limit no upload can meet (checking the file alone takes longer), so the outcome never
    # depends on the machine's speed.
    monkeypatch.setattr(Sandbox, "_own_timeout", lambda self, grade_id: 0.1)
    report = engine.grade(HW, upload, engine.Options(unit_timeout=0.1))
    assert all(c.kind == fb.TIMEOUT and c.feedback.startswith("too slow: ") and "lighter config" in c.feedback
               for c in report.checks), [(c.kind, c.feedback) for c in report.checks]
    assert report.total()[0] == 0


class _Scored:
    """A submission whose scores the checks already hold (no worker)."""

    def __init__(self, hard: float) -> None:
        scores = {"ap": {"easy": 0.9, "medium": 0.8, "hard": hard}, "images": 10}
        self._challenge_scores = {"public": scores, "hidden": {s: scores for s in hidden_set.SPLITS}, "state": None}


@pytest.mark.parametrize("hard", [0.10, 0.30, 0.40, 0.60])
def test_points_follow_the_thresholds_named_in_the_titles(hard):
    for test in graded_tests(HW):
        needed = float(test.graded.title.rsplit(">= ", 1)[1])
        try:
            test(_Scored(hard))
            passed = True
        except fb.GradingFailure as err:
            assert err.kind == fb.WRONG and f"needs AP hard >= {needed:.2f}" in str(err)
            passed = False
        assert passed == (hard >= needed), (test.graded.title, hard)


def test_gradebook_and_class_summary_carry_the_leaderboard_and_its_curves(tmp_path):
    def report(hard, speed, curves=True):
        r = Report(HW, [], [])
        r.leaderboard = [{"name": "AP hard", "value": hard, "order": "desc"},
                         {"name": "images/s", "value": speed, "order": "desc"}]
        r.curves = {"hard": {"recall": [0.0, hard], "precision": [1.0, 0.5]}} if curves else None
        return dict(r.to_dict(), status="graded")

    reports = {"ann": report(0.40, 2.0), "bob": report(0.60, 1.0), "cy": dict(report(0.1, 1.0), leaderboard=None),
               "dee": report(0.2, 3.0, curves=False)}
    rows = class_report.gradebook(tmp_path / "gradebook.csv", reports, ["challenge"], [], {})
    with open(tmp_path / "gradebook.csv", newline="") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert list(book["ann"])[2:5] == ["total", "AP hard", "images/s"]
    assert book["bob"]["AP hard"] == "0.6" and book["ann"]["images/s"] == "2" and book["cy"]["AP hard"] == ""
    text = class_report.summary(tmp_path, rows, reports, ["challenge"], 12, {}).read_text()
    board = text.split("## Leaderboard", 1)[1].splitlines()
    assert board[2].startswith("| rank | student | AP hard |")
    assert board[4].startswith("| 1 | bob | 0.6 |") and board[5].startswith("| 2 | ann | 0.4 |")
    assert "![precision-recall, hard](leaderboard_pr_curves.png)" in text
    assert (tmp_path / "leaderboard_pr_curves.png").stat().st_size > 1000


SNOOP = '''
import pathlib, utils
_root = pathlib.Path(utils.__file__).resolve().parents[1]
for _rel in ("autograder/staff/hidden_set.py", "outputs/challenge-hidden", "autograder/references",
             "autograder/challenge/checks.py"):
    _readable = True
    try:
        _p = _root / _rel
        _p.read_bytes() if _p.is_file() else sorted(_p.iterdir())
    except OSError:
        _readable = False
    if _readable:
        raise RuntimeError(f"LEAK: {_rel} is readable")    # the model is then never built
'''


def _with_model_cell_prefix(source: Path, prefix: str) -> None:
    path = source / "retinaface" / "2_model.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "retinaface")
    cell["source"] = prefix + "".join(cell["source"])
    path.write_text(json.dumps(nb))


def test_upload_code_cannot_read_the_seed_the_hidden_set_or_the_scoring(tmp_path):
    """The upload's model cell tries to read the staff folder (the seed), the cached hidden set, the
    references and the scoring code while the notebooks load, and refuses to build the model if it
    can: the detector still runs, so its checks fail on AP, not on an error."""
    (REPO_ROOT / "outputs" / "challenge-hidden").mkdir(parents=True, exist_ok=True)
    source = _submission(tmp_path / "eve")
    _with_model_cell_prefix(source, SNOOP)
    report = _grade(source)
    assert all(c.kind == fb.WRONG and "LEAK" not in c.feedback for c in report.checks), \
        [(c.kind, c.feedback[:200]) for c in report.checks]


@needs_checkpoint
def test_the_published_checkpoint_is_refused_everywhere(tmp_path):
    """pack, validate and the grader refuse it; with the worker's own check switched off by the
    upload's code, the scoring side still does."""
    public = tmp_path / "public.pt"
    published = load_model("retinaface", "mobilenet0.25", "solutions", weights=PUBLIC_RETINAFACE)
    torch.save(published.state_dict(), public)
    with pytest.raises(ChallengeError, match="the weights are the published checkpoint retinaface-mobilenet0.25-public"):
        pack("retinaface", "mobilenet0.25", public, tmp_path / "packed", impl="solutions")
    source = _submission(tmp_path / "mallory", payload={"model": "retinaface", "cfg": "mobilenet0.25",
                                                        "state_dict": published.state_dict()})
    with pytest.raises(ChallengeError, match="not a detector you trained"):
        validate(source / FILE_NAME)
    _scores_zero_saying(_grade(source), "the weights are the published checkpoint")
    _with_model_cell_prefix(source, "import utils.challenge\nutils.challenge.same_as_published = lambda state: None\n")
    results = _scores_zero_saying(_grade(source), "the weights are the published checkpoint")
    assert all(t["output"].startswith(f"{fb.WRONG}: challenge.pt") for t in results["tests"] if t["max_score"])


@needs_checkpoint
def test_an_upload_fine_tuned_from_published_weights_scores_and_is_listed_for_staff(tmp_path):
    report = _grade(_submission(tmp_path / "fay", weights=fine_tuned_retinaface()))
    assert report.total() == (12, 12), [(c.title, c.feedback) for c in report.checks]
    assert any("starts from the published checkpoint retinaface-mobilenet0.25-public" in line
               for line in report.review), report.review
    assert report.leaderboard[0]["value"] > 0.55


def test_class_grading_and_gradescope_give_one_grade(upload, tmp_path):
    """The same upload graded by class grading (forked graders), Gradescope's run_autograder and
    engine.grade: the same tests, scores, feedback and leaderboard (images/s aside, a timing);
    a zip's challenge.pt is extracted, a submission without one is 0 with the reason."""
    class_dir = tmp_path / "submitted"
    shutil.copytree(upload, class_dir / "ann" / "nested")
    (class_dir / "cy").mkdir()
    shutil.copy(NOTEBOOK, class_dir / "cy" / NOTEBOOK.name)
    with zipfile.ZipFile(class_dir / "bob.zip", "w") as zf:
        for path in upload.rglob("*"):
            if path.is_file():
                zf.write(path, f"bob/{path.relative_to(upload)}")
        zf.writestr("../evil.py", "print('never extracted')")
    out = tmp_path / "grades"
    batch.main(["--submissions", str(class_dir), "--out", str(out), "--hw", HW, "--jobs", "2"])  # a usage error exits
    with open(out / "gradebook.csv", newline="") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert set(book) == {"ann", "bob", "cy"} and all(r["challenge"] == "0" for r in book.values())
    assert float(book["ann"]["parameters"]) > 100_000 and book["cy"]["parameters"] == "0"
    assert book["ann"]["parameters"] == book["bob"]["parameters"]
    assert "## Leaderboard" in (out / "summary.md").read_text() and (out / "leaderboard_pr_curves.png").is_file()
    assert not (tmp_path / "evil.py").exists()

    root = tmp_path / "autograder"
    shutil.copytree(upload, root / "submission")
    from_gradescope = gradescope.run(root, HW)
    direct = gradescope_results(_grade(upload))
    from_class = json.loads((out / "students" / "ann" / "results.json").read_text())

    def same_parts(results):
        return ([(t["name"], t["score"], t["visibility"], t["output"]) for t in results["tests"]],
                [(e["name"], e["value"]) for e in results["leaderboard"] if e["name"] != "images/s"])
    assert same_parts(from_gradescope) == same_parts(direct) == same_parts(from_class)
    cy = json.loads((out / "students" / "cy" / "results.json").read_text())
    assert "no challenge.pt" in cy["tests"][0]["output"] and len(cy["leaderboard"]) == 5


def test_staff_baselines_on_the_hidden_splits(tmp_path):
    """utils.compare's baselines on each hidden split (the kit's demo models and the missing
    packages skipped with their reason); the public RetinaFace where ../shared/data has it."""
    written = challenge_baselines.run(tmp_path, models=())
    assert set(written) == set(hidden_set.SPLITS)
    for name, path in written.items():
        data = json.loads(path.with_name("baselines.json").read_text())
        assert data["images"] == IMAGES and (path.parent / "baselines_pr_curves.png").is_file()
        if challenge_baselines.PUBLIC_WEIGHTS.is_file():
            assert [r["name"] for r in data["rows"]][:1] in (["haar"], ["retinaface-public"])


def test_malformed_predictions_are_dropped_not_fatal():
    splits = hidden_set.render_all()
    name = next(splits["similar"].images.rglob("*.jpg"))
    good = torch.tensor([[10.0, 10.0, 20.0, 20.0, 0.9]], dtype=torch.float64)
    bad = torch.tensor([[math.nan, 1, 2, 3, 0.5], [1, 2, 3, 4, math.inf]], dtype=torch.float64)
    predictions = {"similar": {name.parent.name: {name.stem: torch.cat([good, bad]), "x": "text",
                                                  "y": torch.zeros(7)}, "junk": 3}}
    scores = hidden_set.hidden_scores(predictions)
    assert set(scores) == set(hidden_set.SPLITS)
    assert all(0.0 <= ap <= 1.0 for s in scores.values() for ap in s["ap"].values())
