"""The final project's hidden test set: rendered by the kit's generator from a seed only staff hold.

    python -m autograder.staff.hidden_set [--images N]     # render (or find) both splits, print them

Two splits of WIDER-shaped pictures, drawn by ``data.synthetic`` exactly as the embedded validation
split is (same scenes, annotation rules and easy/medium/hard subsets), from ``secret_seed()``:

* ``similar`` — the validation split's recipe (640-px long side, distractors as in training): what
  the validation AP promises, on pictures nobody tuned on.
* ``shifted`` — the same recipe with a shifted scale mix and more clutter: a 448-px long side
  (every face 30 % smaller, so faces move from easy/medium to hard-only and below WIDER's 10-px
  floor) and twice the non-face distractors. Why this shift: what a student tunes on the
  validation split is the score threshold and the test scales (the kit's own DSFD lite keeps boxes
  of each test scale by size, a split chosen on validation), and both are about face size and
  false positives; a model that learnt faces rather than the validation set's size mix and
  clutter keeps most of its hard AP, one fitted to validation loses it. Backgrounds are not the
  shift: the embedded generator has a single bank of backgrounds (scikit-image's), shared by every
  split, and density per scene kind is fixed inside ``data.scene``.

Where the seed lives and why students cannot have it: ``SECRET_SEED`` is in this file, in
``autograder/staff/``, which the student bundle never ships (the bundle takes the grading core and
``autograder/sandbox/`` by folder; ``staff/`` is the official grader's) and which the grading
worker's view of the kit leaves out (``autograder.sandbox.isolation.kit_view``); the Gradescope zip
and ``make grade-class`` (course staff) have it. The rendered pictures and their ground truth are
cached under ``outputs/`` (git-ignored; not in the worker's view either). A course whose kit is
public sets its own seed in the environment of the staff side: ``KIT_CHALLENGE_SEED`` (the grading
worker is given an allowlisted environment, ``WORKER_ENV``, so it never sees it). The cache folder
is named by a digest of seed and recipe, never by the seed.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from data.synthetic import generate_split, write_ground_truth

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO_ROOT / "outputs" / "challenge-hidden"
SECRET_SEED = 830_417_265_113      # the default hidden seed (override: KIT_CHALLENGE_SEED)
SEED_ENV = "KIT_CHALLENGE_SEED"
IMAGES_PER_SPLIT = 150             # a lite detector scores both splits in well under 3 min on one core
DONE = ".complete"                 # written last: a split folder without it is re-rendered


@dataclass(frozen=True)
class Recipe:
    """How one hidden split is drawn: ``data.synthetic.generate_split``'s knobs."""

    long_side: int        # pixels, the long side of every picture
    distractors: float    # scale of the number of non-face distractors per picture
    seed_offset: int      # added to the secret seed, so the splits share no picture


SPLITS: dict[str, Recipe] = {
    "similar": Recipe(long_side=640, distractors=1.0, seed_offset=0),
    "shifted": Recipe(long_side=448, distractors=2.0, seed_offset=1),
}


@dataclass(frozen=True)
class HiddenSplit:
    name: str
    root: Path              # holds val/images/<event>/<name>.jpg, val/label.txt, val/ground_truth/

    @property
    def images(self) -> Path:
        return self.root / "val" / "images"

    @property
    def ground_truth(self) -> Path:
        return self.root / "val" / "ground_truth"


def secret_seed() -> int:
    """The hidden seed: ``KIT_CHALLENGE_SEED`` when set (an integer), else ``SECRET_SEED``."""
    value = os.environ.get(SEED_ENV, "").strip()
    if not value:
        return SECRET_SEED
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={value!r}: expected an integer seed") from None


def _digest(seed: int, name: str, recipe: Recipe, images: int) -> str:
    text = f"{seed}:{name}:{recipe.long_side}:{recipe.distractors}:{recipe.seed_offset}:{images}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render(name: str, images: int | None = None, cache: Path | None = None,
           seed: int | None = None, workers: int = 1) -> HiddenSplit:
    """Hidden split ``name`` (``SPLITS``), rendered once into ``cache`` and found there afterwards.
    The same seed, recipe and count give byte-identical pictures (``data.synthetic``). Defaults,
    read at each call: ``IMAGES_PER_SPLIT`` pictures, ``CACHE_ROOT``, ``secret_seed()``."""
    if name not in SPLITS:
        raise ValueError(f"unknown hidden split {name!r}; expected one of {', '.join(SPLITS)}")
    images = IMAGES_PER_SPLIT if images is None else images
    cache = CACHE_ROOT if cache is None else cache
    recipe, seed = SPLITS[name], secret_seed() if seed is None else seed
    folder = Path(cache) / f"{name}-{_digest(seed, name, recipe, images)}"
    if (folder / DONE).is_file():
        return HiddenSplit(name, folder)
    Path(cache).mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:   # graders side by side render it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / DONE).is_file():
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            results = generate_split(partial, "val", images, recipe.long_side, seed + recipe.seed_offset,
                                     workers, recipe.distractors)
            write_ground_truth(results, partial / "val" / "ground_truth")
            (partial / DONE).write_text(f"hidden split {name}: {images} pictures\n")
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    return HiddenSplit(name, folder)


def render_all(images: int | None = None, cache: Path | None = None, seed: int | None = None,
               workers: int = 1) -> dict[str, HiddenSplit]:
    """Every hidden split, rendered or found in the cache (``render``'s defaults)."""
    return {name: render(name, images, cache, seed, workers) for name in SPLITS}


def hidden_case(workdir: Path) -> dict:
    """The hidden case of the final project's unit (``autograder.challenge.cases``): the pictures of
    every hidden split, ``pictures/<split>/<event>/*.jpg``; the ground truth stays on the scoring
    side (``hidden_scores``)."""
    pictures = Path(workdir) / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    for name, split in render_all().items():
        shutil.copytree(split.images, pictures / name)
    return {"pictures": str(pictures)}


def hidden_scores(predictions: dict) -> dict[str, dict]:
    """{split: {"ap": {setting: AP}, "images": n, "faces": {setting: n}}} of an upload's
    predictions ({split: {event: {name: [K, 5]}}}) with the WIDER protocol."""
    from autograder.challenge.scoring import score

    return {name: score((predictions or {}).get(name, {}), split.ground_truth,
                        sum(1 for _ in split.images.rglob("*.jpg")))
            for name, split in render_all().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help=f"pictures per split (default {IMAGES_PER_SPLIT})")
    parser.add_argument("--cache", type=Path, default=None, help=f"default {CACHE_ROOT}")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    for name, split in render_all(args.images, args.cache, workers=args.workers).items():
        print(f"{name}: {split.root}")
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
