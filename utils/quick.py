"""The QUICK setting of the experiment notebooks (the ones that train): a whole notebook in under
2 minutes on a 2-core CPU, to check that it runs end to end before spending the real budget.

A notebook's ``parameters`` cell holds ``QUICK = False``; the cell after it calls
``apply_quick("<hw>", globals(), KIT_ROOT)`` when it is True, which sets the registry's
``tiny_params`` (``utils/homeworks.py``: the budgets ``make test`` runs the solutions with) and, unless
the notebook was given its own, a tiny embedded dataset (``outputs/data-quick``: 4 training and 4
validation pictures, generated on first use in about a second) and a separate run folder
(``outputs/notebooks-quick/<hw>``), so a quick run never overwrites the full run's checkpoints.
Only names the notebook already defines are set. The numbers a quick run prints mean nothing.
"""
from __future__ import annotations

from pathlib import Path

from data.synthetic import generate
from utils.homeworks import homework

QUICK_DATA = Path("outputs") / "data-quick"
QUICK_RUNS = Path("outputs") / "notebooks-quick"
QUICK_IMAGES = 4    # per split; seed 1 at 640 px gives faces in every WIDER subset (easy, medium, hard)
QUICK_SEED = 1


def quick_dataset(root: str | Path) -> Path:
    """``root`` holding the tiny embedded dataset, generated there if it is absent."""
    root = Path(root)
    if not ((root / "train" / "label.txt").is_file() and (root / "val" / "ground_truth").is_dir()):
        generate(root, QUICK_IMAGES, QUICK_IMAGES, long_side=640, seed=QUICK_SEED)
    return root


def quick_params(hw: str, kit_root: str | Path, data_root=None, run_dir=None) -> dict:
    """The QUICK values of homework ``hw``: its ``tiny_params``, ``DATA_ROOT`` (``data_root``, else
    the tiny dataset) and ``RUN_DIR`` (``run_dir``, else ``outputs/notebooks-quick/<hw>``)."""
    kit_root = Path(kit_root)
    data = Path(data_root) if data_root else quick_dataset(kit_root / QUICK_DATA)
    runs = Path(run_dir) if run_dir else kit_root / QUICK_RUNS / hw
    return {**homework(hw).tiny_params, "DATA_ROOT": str(data), "RUN_DIR": str(runs)}


def apply_quick(hw: str, namespace: dict, kit_root: str | Path) -> dict:
    """Set the QUICK values in ``namespace`` (a notebook's ``globals()``) for the names it defines,
    keeping a ``DATA_ROOT`` / ``RUN_DIR`` it was given; returns and prints what was set."""
    params = quick_params(hw, kit_root, namespace.get("DATA_ROOT"), namespace.get("RUN_DIR"))
    chosen = {name: value for name, value in params.items() if name in namespace}
    namespace.update(chosen)
    print("QUICK run (its numbers mean nothing): " + ", ".join(f"{k}={v!r}" for k, v in chosen.items()))
    return chosen
