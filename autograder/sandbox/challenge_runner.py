"""The final project's detector run: the only process that runs a challenge upload's code.

    python -m autograder.sandbox.challenge_runner --submission DIR --inputs DIR --scratch DIR \
        --results DIR [--memory-gb G] [--hide PATH ...]

Started by the scoring side (``autograder.staff.challenge``) once per upload, with a wall-clock
limit it enforces by killing the process group. ``DIR`` of ``--submission`` holds what
``python -m utils.challenge pack`` wrote: ``challenge.pt`` and ``<model>/*.ipynb``. The detector is
the student's own code (their notebooks' model and post-processing, given cells from the release),
so before anything of it runs this process confines itself exactly as the grading worker does
(``autograder.sandbox.isolation``: a new root holding Python, the kit's given packages, the grading
core and sandbox, the releases, the upload and the inputs, read-only; no network; its own PID
namespace; writes only to its scratch and results folders) and caps its memory
(``worker.cap_memory``). It differs from the worker in its view of the kit only: every homework's
given code (``detector/``, ``data/``, ``utils/``, ``assignments/``), since the upload may be any
homework's detector. Never in its view: ``autograder/staff/`` (the hidden seed), the references,
the solutions, ``outputs/`` (the rendered hidden set and its ground truth) and the git store.

``--inputs`` holds the pictures only, one folder per hidden split (``<split>/<event>/<name>.jpg``);
their ground truth stays with the scoring side. The run writes ``results/challenge.pt`` (read there
with ``torch.load(weights_only=True)``): ``{"status": "ok", "predictions": {split: {event: {name:
[K, 5] (x, y, w, h, score)}}}, "parameters": int}``, or ``{"status": "refused" | "error", "message":
str}``. Progress goes to the scoring side as JSON lines on a private copy of stdout (``loaded``
before the first picture, ``done`` at the end), so it times the detection itself; the student's
prints go to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

from autograder.sandbox import isolation, reaping
from autograder.sandbox.worker import MAX_FILE_BYTES, SCRATCH_BYTES, cap_memory

RESULT_NAME = "challenge.pt"
GIVEN = ("detector", "data", "utils", "assignments")   # every homework's given code and release
MESSAGE_CHARS = 600


def kit_view(repo: Path) -> list[Path]:
    """What the run reads of the kit: every homework's given code and release, the grading core
    (``autograder/*.py``) and the sandbox; nothing of ``staff/``, the references or the solutions."""
    grading = repo / "autograder"
    return [repo / name for name in GIVEN if (repo / name).exists()] + sorted(grading.glob("*.py")) + \
        [grading / "sandbox"]


def _short(err: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<")]
    where = "".join(f"; line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-2:])
    if isinstance(err, MemoryError):
        text = "ran out of memory (MemoryError)"
    elif isinstance(err, SystemExit):
        text = f"called sys.exit({err.code!r})"
    else:
        text = f"{type(err).__name__}: {err}"
    text = " ".join((text + where).split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def detect_all(challenge, inputs: Path, send) -> dict:
    """The upload's detector on every picture of ``inputs`` (``<split>/<event>/*.jpg``); ``send``
    gets ``event="loaded"`` before the first picture. Also the final project's graded unit
    (``autograder.challenge.cases``) in the grading worker."""
    import torch

    from data.widerface import load_image
    from utils.detectors import load_detector

    net = challenge.load("cpu")
    detector = load_detector(challenge.model, net, challenge.cfg, challenge.impl)
    parameters = sum(p.numel() for p in net.parameters())
    splits = sorted(p for p in inputs.iterdir() if p.is_dir())
    pictures = {s.name: sorted(s.rglob("*.jpg")) for s in splits}
    send(event="loaded")
    predictions: dict = {}
    with torch.inference_mode():
        for split, paths in pictures.items():
            out = predictions.setdefault(split, {})
            for path in paths:
                found = detector.detect([load_image(path)])[0]
                rows = torch.as_tensor(found.wider_rows(), dtype=torch.float64).reshape(-1, 5)
                out.setdefault(path.parent.name, {})[path.stem] = rows.clone()
    return {"status": "ok", "predictions": predictions, "parameters": int(parameters)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", required=True, type=Path, help="challenge.pt and <model>/*.ipynb")
    parser.add_argument("--inputs", required=True, type=Path, help="the hidden pictures, <split>/<event>/*.jpg")
    parser.add_argument("--scratch", required=True, type=Path, help="the only folder student code may write")
    parser.add_argument("--results", required=True, type=Path, help="where challenge.pt (the result) goes")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--hide", action="append", default=[], type=Path, help="a folder it may not read")
    args = parser.parse_args(argv)
    for name in ("submission", "inputs", "scratch", "results"):
        setattr(args, name, getattr(args, name).resolve())

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)                               # student output goes to the log pipe
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)

    def send(**message) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    repo = Path(__file__).resolve().parents[2]
    confinement = isolation.confine([args.scratch, args.results],
                                    [*kit_view(repo), args.submission, args.inputs], args.hide,
                                    capped={args.scratch: SCRATCH_BYTES}, view=True, outside=repo)
    import resource
    import signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.environ.update(TMPDIR=str(args.scratch), HOME=str(args.scratch))
    tempfile.tempdir = None
    os.chdir(args.scratch)
    subreaper = reaping.become_subreaper()
    send(event="confined", mode=confinement.mode, files=confinement.files, note=confinement.note)

    import torch
    torch.set_num_threads(1)                    # one core, as the time limit is stated
    if args.memory_gb > 0:
        cap_memory(args.memory_gb, hard=True)
    from utils.challenge import ChallengeError, validate

    try:
        challenge = validate(args.submission / RESULT_NAME)   # builds the model from the upload's notebooks
        result = detect_all(challenge, args.inputs, send)
    except ChallengeError as err:
        result = {"status": "refused", "message": str(err).replace(str(args.submission) + "/", "")}
    except BaseException as err:  # noqa: BLE001 - student code: whatever it raises is its own failure
        result = {"status": "error", "message": _short(err)}
    reaping.kill_descendants(confinement.pid_namespace, subreaper)
    torch.save(result, args.results / RESULT_NAME)
    send(event="done")


if __name__ == "__main__":
    main()
