"""The grading worker removes the native kernel of the op an exercise asks for: code that switches
the Python watch off (dispatch mode popped, dispatch key excluded) still cannot compute with it, and
the call is recorded. Each scenario runs in a fresh interpreter (a kernel cannot be put back)."""
import subprocess
import sys
import textwrap

import pytest

from tests.notebooks import REPO_ROOT

SCENARIO = textwrap.dedent('''
    import torch, torchvision
    from torch.utils._python_dispatch import _disable_current_modes
    from autograder.retinaface.library_ops import NMS_OPS
    from autograder.sandbox.forbidden import ForbiddenCalls

    boxes, scores = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8])
    watch = ForbiddenCalls(NMS_OPS, CHARGED)
    watch.install()
    print("removed", watch.remove_kernels())
    with watch:
        try:
            with _disable_current_modes():
                with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)):
                    print("computed", torch.ops.torchvision.nms(boxes, scores, 0.5).tolist())
        except RuntimeError as err:
            print("refused", err)
    print("calls", watch.calls)
''')


def _run(charged: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", f"CHARGED = {charged!r}\n" + SCENARIO], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_switched_off_watch_finds_no_kernel_and_the_call_is_recorded():
    out = _run({})
    assert "removed ['torchvision::nms']" in out
    assert "refused torch.ops.torchvision.nms is not available" in out and "computed" not in out
    assert "calls ['torch.ops.torchvision.nms" in out


def test_an_op_a_called_unit_also_forbids_keeps_its_kernel():
    # postprocess calls the student's nms, which forbids nms too: that call is charged to nms, once,
    # so postprocess must still run.
    out = _run({"nms": ("torch.ops.torchvision.nms",)})
    assert "removed []" in out and "computed [0]" in out
