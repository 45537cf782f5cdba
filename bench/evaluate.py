"""utils.evaluate against the slow loop reference on the whole WIDER FACE val set.

Predictions are made from the real val ground truth (``../shared/data/wider_val_gt``): faces
jittered, some dropped, some duplicated, false positives added, random scores (seeded). Without
that folder a generated ground truth of the same size is used instead, and the bench says so.

Prints the time of ``evaluate`` and of the slow reference on the same predictions, their ratio,
the largest AP and curve differences, and the end-to-end time of what the CLI does (read the
submission files, load the ``.mat`` files, evaluate), whose target is <= 3 s on 2 cores.

    python -m bench.evaluate [--seed 0] [--events N]
"""
from __future__ import annotations

import argparse
import tempfile
import warnings

import numpy as np

from bench.timing import best_time
from data.wider_gt import load_wider_gt, save_wider_gt
from tests.reference_wider_eval import reference_evaluate
from tests.wider_eval_data import SHARED_GT_DIR, first_events, predictions_from_gt, random_ground_truth
from utils.evaluate import evaluate, read_predictions, write_predictions

GENERATED_EVENTS = 61          # the size of the real val set: 61 events, 3226 images
GENERATED_IMAGES_PER_EVENT = 53
END_TO_END_TARGET_S = 3.0
REPEATS = 3                    # best of, for the fast timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, default=None, help="only the first N events")
    args = parser.parse_args()

    if (SHARED_GT_DIR / "wider_face_val.mat").is_file():
        gt, source = load_wider_gt(SHARED_GT_DIR), f"real WIDER FACE val ground truth ({SHARED_GT_DIR})"
    else:
        print(f"note: {SHARED_GT_DIR} not found; skipping the real val set and using a generated "
              f"ground truth of the same size instead")
        gt = random_ground_truth(args.seed, GENERATED_EVENTS, GENERATED_IMAGES_PER_EVENT)
        source = "generated ground truth"
    if args.events:
        gt = first_events(gt, args.events)
    predictions = predictions_from_gt(gt, args.seed)
    count = sum(len(d) for per_image in predictions.values() for d in per_image.values())
    print(f"{source}: {len(gt.events)} events, {gt.num_images()} images, "
          f"{sum(len(b) for e in gt.boxes for b in e)} faces; {count} predictions (seed {args.seed})")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast_s, result = best_time(lambda: evaluate(predictions, gt), REPEATS)
        slow_s, reference = best_time(lambda: reference_evaluate(predictions, gt), 1)
        with tempfile.TemporaryDirectory() as tmp:
            save_wider_gt(gt, f"{tmp}/gt")
            for event, per_image in predictions.items():
                for name, dets in per_image.items():
                    write_predictions(f"{tmp}/pred", event, name, dets)
            end_to_end_s, from_files = best_time(
                lambda: evaluate(read_predictions(f"{tmp}/pred"), load_wider_gt(f"{tmp}/gt")), REPEATS)

    ap_diff = max(abs(result.ap[s] - reference[s][0]) for s in reference)
    curve_diff = max(np.abs(np.stack(result.curves[s]) - np.stack(reference[s][1:])).max() for s in reference)
    file_diff = max(abs(result.ap[s] - from_files.ap[s]) for s in result.ap)
    print("AP      " + "  ".join(f"{s} {ap:.6f}" for s, ap in result.ap.items()))
    print(f"utils.evaluate.evaluate   {fast_s:8.3f} s  (best of {REPEATS})")
    print(f"slow loop reference       {slow_s:8.3f} s")
    print(f"speed-up                  {slow_s / fast_s:8.1f} x")
    print(f"max |AP - reference|      {ap_diff:.1e}   max |curve - reference| {curve_diff:.1e}")
    print(f"end to end (read files + load .mat + evaluate) {end_to_end_s:.3f} s "
          f"(target <= {END_TO_END_TARGET_S:.0f} s; AP from files differs by {file_diff:.1e})")


if __name__ == "__main__":
    main()
