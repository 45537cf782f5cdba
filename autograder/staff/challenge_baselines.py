"""The final project's staff report: the real baselines on each hidden split.

    python -m autograder.staff.challenge_baselines [--images N] [--out outputs/challenge-hidden/baselines]

Runs ``utils.compare``'s baselines (OpenCV's Haar cascade, the public RetinaFace MobileNet-0.25
checkpoint, the kit's four detectors after ``make demo``, MTCNN where its package runs; each one
that cannot run here is skipped with its reason) on each hidden split of
``autograder.staff.hidden_set``, with the same protocol as ``python -m utils.compare --baselines``
on the validation split: ``OUT/<split>/{baselines.md, baselines.json, baselines_pr_curves.png}``.
Staff only (the hidden set never reaches students); the baselines are trusted code, so they run
in this process, not in the sandbox.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from autograder.staff.hidden_set import CACHE_ROOT, IMAGES_PER_SPLIT, render_all
from utils.compare import PUBLIC_WEIGHTS, compare_baselines
from utils.detectors import ADAPTERS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = CACHE_ROOT / "baselines"


def run(out: Path = DEFAULT_OUT, images: int | None = None, cache: Path | None = None,
        models: tuple[str, ...] = tuple(ADAPTERS), public_weights: Path = PUBLIC_WEIGHTS,
        demo_root: Path = REPO_ROOT / "outputs", device: str = "cpu") -> dict[str, Path]:
    """{split: its baselines.md}, every hidden split rendered (or found) first."""
    written = {}
    for name, split in render_all(images, cache).items():
        args = argparse.Namespace(data=split.root, split="val", out=Path(out) / name, impl="solutions",
                                  device=device, public_weights=Path(public_weights), demo_root=Path(demo_root))
        compare_baselines(args, list(models))
        written[name] = Path(out) / name / "baselines.md"
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--images", type=int, default=None, help=f"hidden pictures per split (default {IMAGES_PER_SPLIT})")
    parser.add_argument("--models", default=",".join(ADAPTERS), help="the kit's detectors after make demo")
    parser.add_argument("--public-weights", type=Path, default=PUBLIC_WEIGHTS)
    parser.add_argument("--demo-root", type=Path, default=REPO_ROOT / "outputs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    models = tuple(m for m in args.models.split(",") if m)
    for name, path in run(args.out, args.images, models=models, public_weights=args.public_weights,
                          demo_root=args.demo_root, device=args.device).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
