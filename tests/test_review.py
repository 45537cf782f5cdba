"""The staff-only review of answer cells (``autograder.review``): every shortcut through library or
interpreter internals that a watch inside the student's process cannot stop is listed for a person,
and the solutions of every homework give no finding (so a finding is worth a look)."""
from __future__ import annotations

from pathlib import Path

import pytest

from autograder.review import findings, review
from autograder.units import HOMEWORKS
from tests.notebooks import REPO_ROOT, set_answer

# Shortcuts tried by a determined student (issue "Integrity, second pass"), one per line.
ATTACKS = {
    "dispatch mode switched off": "from torch.utils._python_dispatch import _disable_current_modes\n"
                                  "with _disable_current_modes():\n    keep = torch.ops.torchvision.nms(b, s, t)",
    "dispatch keys excluded": "with torch._C._ExcludeDispatchKeyGuard(keys):\n    pass",
    "the watch found through gc": "import gc\nwatch = [o for o in gc.get_objects() if type(o).__name__ == 'X']",
    "the caller's frame": "import sys\nframe = sys._getframe(1).f_back",
    "a reloaded library module": "import importlib, torchvision\nimportlib.reload(torchvision.ops.boxes)",
    "a private torchvision helper": "inter, union = torchvision.ops.boxes._box_inter_union(a, b)",
    "a private DIoU helper": "from torchvision.ops.diou_loss import _diou_iou_loss",
    "torch's C smooth L1": "return torch._C._nn.smooth_l1_loss(x, y, 1, 1.0)",
    "a private function by getattr": "f = getattr(torchvision.models.efficientnet, '_make_divisible')",
    "C calls": "import ctypes\nctypes.CDLL(None)",
    "a subprocess": "import subprocess\nsubprocess.run(['cat', '/etc/passwd'])",
    "code objects": "nms.__code__ = other.__code__",
    "exec": "exec(payload)",
    "a fresh, unwatched module copy": "new = type(mod)(mod.__name__)\nmod.__spec__.loader.exec_module(new)",
    "a name spelled out of constants": "pd = getattr(getattr(torch, 'utils'), '_python' + '_dispatch')",
    "a computed name on a library": "f = getattr(torchvision.ops, name)",
}
CLEAN = [
    "def jaccard(a, b):\n    inter = intersect(a, b)\n    return inter / (area(a)[:, None] + area(b) - inter)",
    "class L2Norm(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n        self._eps = 1e-10",
    "import math\nimport torch.nn.functional as F\nx = F.relu(torch.zeros(3))",
    "for k in range(4):\n    for block in getattr(self, f'layer{k + 1}'):\n        block.conv2 = conv",
]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_shortcut_through_internals_is_listed(attack):
    assert findings(ATTACKS[attack]), attack


@pytest.mark.parametrize("source", CLEAN)
def test_ordinary_answers_are_not_listed(source):
    assert findings(source) == []


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_the_solutions_give_no_finding(hw):
    assert review(REPO_ROOT / "solutions" / hw) == []


def test_a_finding_names_the_unit_notebook_and_line(tmp_path: Path):
    folder = tmp_path / "retinaface"
    folder.mkdir()
    notebook = folder / "4_matching_nms.ipynb"
    notebook.write_bytes((REPO_ROOT / "solutions" / "retinaface" / notebook.name).read_bytes())
    set_answer(notebook, "nms", "import gc\ndef nms(dets, thresh):\n    return gc.get_objects()\n")
    found = review(folder)
    assert found and all(line.startswith("nms (4_matching_nms.ipynb, line ") for line in found), found
    assert any("imports gc" in line for line in found) and any(".get_objects" in line for line in found)
