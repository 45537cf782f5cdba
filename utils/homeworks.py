"""The course's homeworks, each known in one place: this registry.

A homework is its folders (``solutions/<hw>/``, ``assignments/<hw>/``, ``autograder/<hw>/``,
``autograder/references/<hw>.pt``, ``detector/<hw>/``, ``utils/detectors/<hw>.py``) plus one entry
here: its name, its notebooks in course order, its detector adapter (None for the final project,
which trains the other homeworks' detectors) and the notebook parameters
that run its notebooks in seconds (``make test``). Everything else reads this entry: the course
order of the grader (``autograder.units.HOMEWORKS``), the adapters (``utils.detectors``), the order
``make solutions`` runs the notebooks in (``utils.run_notebooks``) and the tests.
``tests/test_layout.py`` checks that the folders agree with the entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class UnknownHomework(ValueError):
    """A homework name that is not in the registry: says which ones are."""


@dataclass(frozen=True)
class Homework:
    name: str                                  # the folder name under solutions/, assignments/, autograder/
    notebooks: tuple[str, ...]                 # file names in the order students work through them
    adapter: str | None                        # module of the detector adapter (utils.detectors interface);
                                               # None for a homework that builds no detector of its own
    # Parameters-cell values that shrink every notebook to seconds (names a notebook does not
    # define are ignored); make test executes the solutions with them.
    tiny_params: dict[str, Any] = field(default_factory=dict)
    # True for a homework that uses every homework's given code and release (the final project: a
    # student may train any of the detectors): its bundle and worker view leave nothing out.
    all_given: bool = False
    # A file the student uploads beside the notebooks (the final project's packed detector,
    # ``challenge.pt``); grading stages it with the notebook folders beside it (``<model>/*.ipynb``).
    upload: str = ""


REGISTRY: tuple[Homework, ...] = (
    Homework("retinaface",
             ("1_data.ipynb", "2_model.ipynb", "3_anchors.ipynb", "4_matching_nms.ipynb",
              "5_loss_training.ipynb", "6_testing_finetuning.ipynb", "7_cascade_regression.ipynb"),
             "utils.detectors.retinaface",
             {"TRAIN_IMAGES": 4, "VAL_IMAGES": 4, "IMAGE_SIZE": 96, "BATCH_SIZE": 2, "EPOCHS": 1,
              "COMPARE_ITERATIONS": 2, "FINETUNE_ITERATIONS": 2, "CASCADE_ITERATIONS": 2}),
    Homework("dsfd",
             ("1_model.ipynb", "2_efficientnet_scaling.ipynb", "3_anchors_loss_sampling.ipynb",
              "4_experiments.ipynb"),
             "utils.detectors.dsfd",
             {"ITERATIONS": 1, "BATCH_SIZE": 2, "IMAGE_SIZE": 128, "MAX_PHI": 1, "COMPENSATION_IMAGES": 4,
              "DIAGNOSTIC_IMAGES": 4, "DAS_SEEDS": (0,), "RF_SIZE": 256}),
    Homework("tinaface",
             ("1_model.ipynb", "2_anchors_losses.ipynb", "3_experiments.ipynb"),
             "utils.detectors.tinaface",
             {"IMAGE_SIZE": 64, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_SIZE": 8, "TIMING_REPEATS": 1,
              "NECK_CONFIGS": ("lite",)}),
    Homework("rfcn",
             ("1_anchors_boxes.ipynb", "2_psroi_model.ipynb", "3_targets_losses.ipynb", "4_experiments.ipynb"),
             "utils.detectors.rfcn",
             {"IMAGE_SIZE": 96, "BATCH_SIZE": 2, "ITERATIONS": 2, "TIMING_IMAGES": 1,
              "VARIANTS": ("weighted", "ohem")}),
    # The final project: train one of the detectors above, graded on a hidden test set. No adapter
    # of its own; it reads every homework's given code and release.
    Homework("challenge", ("1_final_project.ipynb",), None,
             {"ITERATIONS": 2, "BATCH_SIZE": 2, "IMAGE_SIZE": 96, "EXPORT_CHECK_IMAGES": 1},
             all_given=True, upload="challenge.pt"),
)

NAMES: tuple[str, ...] = tuple(h.name for h in REGISTRY)


def homework(name: str) -> Homework:
    """The registry entry of ``name``; a clear error for an unknown one."""
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise UnknownHomework(f"unknown homework {name!r}; expected one of {', '.join(NAMES)}")


GIVEN_PACKAGES = ("detector", "data", "utils")   # the kit's given code, shared by the homeworks


def of_another_homework(rel: Path, hw: str) -> bool:
    """Whether the kit path ``rel`` (relative to the kit's root) belongs to a homework other than
    ``hw``: a folder or file named after it (``detector/dsfd/``, ``utils/detectors/dsfd.py``,
    ``utils/dsfd_diagnostics.py``). Nothing for a homework that uses every homework's given code
    (``Homework.all_given``)."""
    if any(entry.name == hw and entry.all_given for entry in REGISTRY):
        return False
    others = [name for name in NAMES if name != hw]
    return any(part.split(".")[0] == other or part.startswith(f"{other}_")
               for part in rel.parts for other in others)


def given_code(root: Path, hw: str) -> list[Path]:
    """The given code homework ``hw`` ships and its grading worker reads: ``GIVEN_PACKAGES`` less
    the other homeworks' parts (the DSFD detector's box coding is RetinaFace's exercise). Whole
    folders where nothing in them is left out, else their entries one by one. A homework that uses
    every homework's given code (``Homework.all_given``) also gets the other homeworks' releases
    (``assignments/<other>/``: the given cells of the detector its student chooses)."""
    def walk(path: Path) -> list[Path]:
        if path.name == "__pycache__" or of_another_homework(path.relative_to(root), hw):
            return []
        if path.is_file() or not any(of_another_homework(p.relative_to(root), hw) for p in path.rglob("*")
                                     if "__pycache__" not in p.parts):
            return [path]
        return [q for child in sorted(path.iterdir()) for q in walk(child)]
    given = [p for name in GIVEN_PACKAGES if (root / name).exists() for p in walk(root / name)]
    if any(entry.name == hw and entry.all_given for entry in REGISTRY):
        given += [root / "assignments" / name for name in NAMES
                  if name != hw and (root / "assignments" / name).is_dir()]
    return given
