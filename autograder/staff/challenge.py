"""Grading a final-project upload: its detector on the hidden test set, points from AP thresholds.

    python -m autograder.staff.challenge --submission DIR [--results results.json] [--images N]

``DIR`` is what the student uploaded: ``challenge.pt`` and ``<model>/*.ipynb`` as ``python -m
utils.challenge pack`` writes them (found anywhere inside ``DIR``). The hidden splits
(``autograder.staff.hidden_set``: ``similar`` and ``shifted``) are rendered once and cached. The
upload's detector runs in ``autograder.sandbox.challenge_runner`` — confined as the grading worker
is, one CPU thread, ``MEMORY_GB`` of memory, ``TIME_LIMIT`` seconds for checking the file, building
the model from the student's notebooks and detecting on every hidden picture — and only the pictures
reach it; the ground truth stays here, where ``utils.evaluate`` scores the predictions with the
WIDER protocol (AP easy / medium / hard).

Points (``THRESHOLDS``): each test of unit ``challenge`` is one AP threshold of one split, and its
title says what it needs. Tests on ``similar`` are visible (the leaderboard shows the same split),
those on ``shifted`` are ``after_due_date`` (a private leaderboard, as in Kaggle: tuning on repeated
uploads cannot reach it). Every refusal scores 0 on every test with its one-line reason, never a
crash: no or unreadable ``challenge.pt``, an unknown model or config, a state dict that does not fit
(``utils.challenge.validate``, run inside the sandbox since it builds the student's model), NaN
weights, over 50 MB, over the time limit, a crash or out of memory.

The report's ``leaderboard`` (Gradescope's top-level ``"leaderboard"`` entries of results.json) has
AP hard, medium and easy on ``similar``, images/s (detection only, measured here between the
runner's ``loaded`` and ``done`` messages) and parameters (counted here from the file's state dict:
floating-point tensors less BatchNorm statistics).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from autograder import feedback as fb
from autograder.challenge.scoring import ap_text, score
from autograder.results import OK, CheckResult, Report, gradescope_results
from autograder.sandbox.challenge_runner import RESULT_NAME
from autograder.sandbox.supervisor import REPO_ROOT, hidden_paths, read_result, worker_environment
from autograder.staff.hidden_set import CACHE_ROOT, IMAGES_PER_SPLIT, SPLITS, render
from utils.challenge import FILE_NAME

HW = "challenge"
UNIT = "challenge"
TIME_LIMIT = 180.0          # seconds for the whole upload (check, build, both hidden splits), one core
MEMORY_GB = 4.0             # as every grading unit
VISIBLE_SPLIT = "similar"   # the split of the visible tests and of the leaderboard
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Threshold:
    split: str
    setting: str     # easy | medium | hard
    min_ap: float
    points: float

    @property
    def title(self) -> str:
        return (f"hidden split '{self.split}': AP {self.setting} >= {self.min_ap:.2f} "
                f"({self.points:g} point{'s' if self.points != 1 else ''})")


# Cumulative tiers: a model that reaches 0.55 hard on 'similar' gets all three of its tests. The
# values are set from measured models (README, "Final project").
THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("similar", "hard", 0.15, 2),
    Threshold("similar", "hard", 0.35, 2),
    Threshold("similar", "hard", 0.55, 2),
    Threshold("shifted", "hard", 0.15, 2),
    Threshold("shifted", "hard", 0.30, 2),
)


@dataclass
class Run:
    """What the runner gave back: status ok | refused | error | timeout | crashed."""

    status: str
    message: str = ""
    predictions: dict | None = None
    seconds: float = 0.0          # detection only (loaded -> done), measured here
    log: str = ""
    note: str = ""                # the runner's isolation note ('' when it was confined)


def find_upload(source: Path) -> Path | None:
    """The folder holding ``challenge.pt`` in an upload (itself or the shallowest sub-folder)."""
    source = Path(source)
    if (source / FILE_NAME).is_file():
        return source
    found = sorted(source.rglob(FILE_NAME), key=lambda p: (len(p.parts), str(p))) if source.is_dir() else []
    return found[0].parent if found else None


def count_parameters(path: Path) -> int | None:
    """Learnable values in the file's state dict (floating tensors, BatchNorm statistics left out),
    read here with ``weights_only=True``; None when the file cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        return int(sum(v.numel() for k, v in state.items() if isinstance(v, torch.Tensor)
                       and v.is_floating_point() and not k.endswith(BN_STATISTICS)))
    except Exception:  # noqa: BLE001 - the runner names what is wrong with the file
        return None


def _stage(upload: Path, dest: Path) -> None:
    """Only what the runner needs: challenge.pt and the notebook folders beside it."""
    dest.mkdir(parents=True)
    if (upload / FILE_NAME).is_file() and not (upload / FILE_NAME).is_symlink():
        shutil.copy2(upload / FILE_NAME, dest / FILE_NAME)
    for folder in upload.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            for nb in folder.glob("*.ipynb"):
                if nb.is_file() and not nb.is_symlink():
                    (dest / folder.name).mkdir(exist_ok=True)
                    shutil.copy2(nb, dest / folder.name / nb.name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def run_detector(upload: Path, pictures: dict[str, Path], time_limit: float = TIME_LIMIT,
                 memory_gb: float = MEMORY_GB) -> Run:
    """Run the upload's detector on ``pictures`` ({split: folder of <event>/*.jpg}) in the runner."""
    with tempfile.TemporaryDirectory(prefix="challenge-") as tmp:
        work = Path(tmp)
        work.chmod(0o711)
        submission, inputs, scratch, results = (work / n for n in ("submission", "inputs", "scratch", "results"))
        _stage(upload, submission)
        inputs.mkdir(mode=0o755)
        for split, folder in pictures.items():
            shutil.copytree(folder, inputs / split)
        for path in inputs.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        for folder in (scratch, results):
            folder.mkdir(mode=0o700)
        cmd = [sys.executable, "-m", "autograder.sandbox.challenge_runner", "--submission", str(submission),
               "--inputs", str(inputs), "--scratch", str(scratch), "--results", str(results),
               "--memory-gb", str(memory_gb)]
        for path in hidden_paths(submission, REPO_ROOT / "assignments") + [REPO_ROOT / "outputs",
                                                                           REPO_ROOT / "autograder" / "staff"]:
            if path.is_dir():
                cmd += ["--hide", str(path)]
        env = worker_environment()
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        events: dict[str, float] = {}
        confined: dict = {}
        log: list[bytes] = []

        def read_events() -> None:
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                    events.setdefault(message["event"], time.monotonic())
                    if message["event"] == "confined" and not confined:
                        confined.update(message)
                except (ValueError, KeyError, TypeError):
                    pass

        def read_log() -> None:
            for chunk in iter(lambda: proc.stderr.read(65536), b""):
                log.append(chunk)
                del log[:-4]                                  # keep a tail only

        readers = [threading.Thread(target=read_events, daemon=True), threading.Thread(target=read_log, daemon=True)]
        for reader in readers:
            reader.start()
        try:
            status = proc.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)        # the runner and all it started
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            for reader in readers:
                reader.join(timeout=5)
        tail = b"".join(log).decode(errors="replace")[-1500:]
        note = str(confined.get("note") or "") if not confined.get("files", False) else ""
        if status is None:
            where = ("while detecting on the hidden pictures" if "loaded" in events
                     else "before its first hidden picture (checking the file and building the model)")
            return Run("timeout", f"too slow: did not finish within {time_limit:g} s on one CPU core "
                                  f"({where}); use a lighter config, smaller test scales or fewer "
                                  f"candidates", log=tail, note=note)
        data = read_result(results / RESULT_NAME)
        if not isinstance(data, dict) or data.get("status") not in ("ok", "refused", "error"):
            why = f"exit status {status}" if status >= 0 else f"killed by signal {-status}"
            return Run("crashed", f"the detector run crashed ({why}; out of memory past {memory_gb:g} GB "
                                  f"or a process exit) and left no result", log=tail, note=note)
        if data["status"] != "ok":
            return Run(data["status"], str(data.get("message", ""))[:800], log=tail, note=note)
        seconds = events.get("done", time.monotonic()) - events.get("loaded", 0.0)
        return Run("ok", predictions=data.get("predictions"), seconds=max(seconds, 1e-6), log=tail, note=note)


def score_splits(predictions: dict, splits: dict) -> dict[str, dict]:
    """{split: {"ap": {setting: AP}, "images": n, "faces": {setting: n}}} with the WIDER protocol."""
    return {name: score(predictions.get(name, {}), split.ground_truth, sum(1 for _ in split.images.rglob("*.jpg")))
            for name, split in splits.items()}


def hidden_case(workdir: Path, images: int = IMAGES_PER_SPLIT, cache: Path = CACHE_ROOT) -> dict:
    """The hidden case of the homework's unit (``autograder.challenge.cases``): the pictures of
    both hidden splits (rendered once, cached), ``pictures/<split>/<event>/*.jpg``; the ground
    truth stays here (``autograder.challenge.checks`` scores with ``render`` again, from the cache)."""
    pictures = Path(workdir) / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        shutil.copytree(render(name, images, cache).images, pictures / name)
    return {"pictures": str(pictures)}


def checks_from(run: Run, scores: dict | None) -> list[CheckResult]:
    """One check per threshold: points when the split's AP reaches it, else 0 with the reason."""
    checks = []
    for t in THRESHOLDS:
        public = t.split == VISIBLE_SPLIT
        if scores is None:
            kind = {"timeout": fb.TIMEOUT, "crashed": fb.CRASHED, "refused": fb.ERROR}.get(run.status, fb.ERROR)
            checks.append(CheckResult(UNIT, t.title, t.points, 0.0, kind, run.message, public, 0.0))
            continue
        ap = scores[t.split]["ap"].get(t.setting, 0.0)
        ok = ap >= t.min_ap
        text = f"{ap_text(scores[t.split])}; needs AP {t.setting} >= {t.min_ap:.2f}"
        checks.append(CheckResult(UNIT, t.title, t.points, t.points if ok else 0.0, OK if ok else fb.WRONG,
                                  text, public, round(run.seconds, 3)))
    return checks


def leaderboard(scores: dict | None, run: Run, parameters: int | None) -> list[dict]:
    """Gradescope's leaderboard entries (name, value, order): AP on the visible split, speed, size."""
    ap = (scores or {}).get(VISIBLE_SPLIT, {}).get("ap", {})
    images = sum(s["images"] for s in (scores or {}).values())
    speed = images / run.seconds if scores and run.seconds > 0 else 0.0
    return [{"name": "AP hard", "value": round(ap.get("hard", 0.0), 4), "order": "desc"},
            {"name": "AP medium", "value": round(ap.get("medium", 0.0), 4), "order": "desc"},
            {"name": "AP easy", "value": round(ap.get("easy", 0.0), 4), "order": "desc"},
            {"name": "images/s", "value": round(speed, 2), "order": "desc"},
            {"name": "parameters", "value": int(parameters or 0), "order": "asc"}]


def grade_challenge(source: Path, images: int = IMAGES_PER_SPLIT, cache: Path = CACHE_ROOT,
                    time_limit: float = TIME_LIMIT, memory_gb: float = MEMORY_GB,
                    seed: int | None = None) -> Report:
    """The Report of one upload (``source``: the uploaded folder); never raises on the upload."""
    started = time.monotonic()
    splits = {name: render(name, images, cache, seed) for name in SPLITS}
    upload = find_upload(Path(source))
    notes: list[str] = []
    scores, parameters = None, None
    if upload is None:
        run = Run("refused", f"no {FILE_NAME} in the upload; make it with python -m utils.challenge pack "
                             f"--model M --weights W --out DIR and upload the folder DIR")
    else:
        parameters = count_parameters(upload / FILE_NAME)
        run = run_detector(upload, {n: s.images for n, s in splits.items()}, time_limit, memory_gb)
        if run.note:
            notes.append(run.note)
        if run.status == "ok":
            try:
                scores = score_splits(run.predictions or {}, splits)
            except ValueError as err:        # a hidden split without faces of a setting: a kit problem
                run = Run("error", f"the grader could not score the predictions (a kit problem, not your "
                                   f"upload; tell your course staff): {err}")
        if scores is not None:
            notes.append(f"detection: {sum(s['images'] for s in scores.values())} hidden pictures in "
                         f"{run.seconds:.1f} s on one CPU core")
    report = Report(HW, checks_from(run, scores), notes)
    report.leaderboard = leaderboard(scores, run, parameters)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", required=True, type=Path, help="the uploaded folder")
    parser.add_argument("--results", type=Path, help="write Gradescope's results.json here")
    parser.add_argument("--images", type=int, default=IMAGES_PER_SPLIT, help="hidden pictures per split")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT)
    args = parser.parse_args(argv)
    report = grade_challenge(args.submission, args.images, time_limit=args.time_limit)
    results = gradescope_results(report)
    for test in results["tests"]:
        print(f"{test['score']:g}/{test['max_score']:g}  {test['name']}: {test['output']}")
    print(f"score {results['score']:g}/{results['max_score']:g}; leaderboard: "
          + ", ".join(f"{e['name']} {e['value']}" for e in results["leaderboard"]))
    if args.results:
        args.results.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
