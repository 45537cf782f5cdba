"""Hostile submissions cannot change a grade (``autograder.sandbox.isolation``, ``reaping``, ``forbidden``).

Each submission is the solutions with attacks added to answer cells. Attacks that must fail are
written so that the unit keeps its points only if they fail (the cell raises when an attack
works), and the tests also check from outside: the kit's files are byte-identical, no process
survives, results.json is what the scoring side wrote. Three gradings cover everything: two through
``pytest autograder/`` as a TA runs it, one through the Sandbox API to look inside the scratch folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.notebooks import REPO_ROOT, copy_homework, edit_cells, grade, scores_by_unit

MATCHING = "retinaface/4_matching_nms.ipynb"
LOSS = "retinaface/5_loss_training.ipynb"
MARKER = "facekit-hostile-survivor"
REFERENCES = REPO_ROOT / "autograder" / "references" / "retinaface.pt"
KIT_FILES = (REFERENCES, REPO_ROOT / "autograder" / "retinaface" / "test_retinaface.py",
             REPO_ROOT / "solutions" / "retinaface" / "4_matching_nms.ipynb")
# Readable on the machine, never in the worker's view (an allowlist: it sees only what it is given).
PLANTED = (REPO_ROOT / "outputs" / "hostile-probe" / "answers.txt", Path("/tmp/facekit-hostile-probe/answers.txt"))
OUTSIDE_THE_VIEW = (*PLANTED, REPO_ROOT / "autograder" / "staff" / "batch.py",
                    *(REPO_ROOT / "autograder" / "retinaface" / name for name in
                      ("oracles.py", "mistakes.py", "checks.py", "test_retinaface.py")),
                    REPO_ROOT / "autograder" / "dsfd" / "oracles.py", REPO_ROOT / "README.md",
                    REPO_ROOT / "tests" / "classroom.py", REPO_ROOT / ".git" / "HEAD")
UNIT_TIMEOUT = "20"


def _namespaces_available() -> bool:
    flags = ["-m", "-n", "-p", "-f"] if os.geteuid() == 0 else ["-U", "-r", "-m", "-n", "-p", "-f"]
    try:
        return subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not _namespaces_available(),
                                reason="file isolation needs Linux namespaces (grading notes it is off)")


def inject(notebook: Path, grade_id: str, at_load: str = "", in_body: str = "", replace: str = "") -> None:
    """Add code to an answer cell: ``at_load`` before it, ``in_body`` at the start of the graded
    function's solution; or ``replace`` the whole cell."""
    def edit(cells):
        cell = next(c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
        source = textwrap.dedent(replace) if replace else "".join(cell["source"])
        if in_body:
            begin = "### BEGIN SOLUTION\n"
            assert begin in source, grade_id
            source = source.replace(begin, begin + textwrap.indent(textwrap.dedent(in_body), "    "), 1)
        cell["source"] = textwrap.dedent(at_load) + source
    edit_cells(notebook, edit)


def _digests() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in KIT_FILES}


def _survivors() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and MARKER.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# Defined at load time in the hostile cells; each returns what it managed to do (nothing, if isolated).
HOSTILE_HELPERS = f'''
import os as _os, sys as _sys, socket as _socket
def _hostile_writes():
    done = []
    for path in {[str(p) for p in KIT_FILES]!r} + [{str(REFERENCES.parent / "extra.pt")!r}]:
        try:
            with open(path, "ab") as f:
                f.write(b"tampered")
            done.append(path)
        except OSError:
            pass
    return done
def _hostile_reads():
    done = []
    for path in [{str(REFERENCES)!r}, {str(KIT_FILES[2])!r}, *{[str(p) for p in OUTSIDE_THE_VIEW]!r}]:
        try:
            with open(path, "rb") as f:
                f.read(16)
            done.append(path)
        except OSError:
            pass
    return done
def _hostile_imports():
    """The kit's own reference implementations, imported from an answer cell."""
    import importlib
    done = []
    for name in ("autograder.retinaface.oracles", "autograder.retinaface.mistakes", "autograder.retinaface.checks",
                 "autograder.retinaface.oracles_loss", "autograder.staff.batch", "autograder.dsfd.oracles"):
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass
    return done
def _hostile_survivor(results):
    """Double fork + setsid: a daemon that keeps trying to overwrite results.json."""
    code = ("import time  # {MARKER}\\n"
            "end = time.time() + 120\\n"
            "while time.time() < end:\\n"
            "    try:\\n"
            "        open(%r, 'w').write('{{\\"score\\": 999}}')\\n"
            "    except OSError:\\n"
            "        pass\\n"
            "    time.sleep(0.2)\\n") % results
    first = _os.fork()
    if first == 0:
        try:
            _os.setsid()
            if _os.fork() == 0:
                _os.execv(_sys.executable, [_sys.executable, "-c", code, "{MARKER}"])
        finally:
            _os._exit(0)
    _os.waitpid(first, 0)
def _hostile_connect(port):
    try:
        _socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False
'''


@pytest.fixture(scope="module")
def listener():
    """A real server on 127.0.0.1: connecting to it from student code must still fail."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, listener):
    """Writes, reads, a survivor and a connection at load time and in units; a 10 MB print; 1.5 GiB
    written to the scratch folder; 6 GiB allocated at load time; a thread left running at load time;
    jaccard calling box_iou, nms calling an alias of torchvision.ops.nms imported at load time,
    focal loss calling sigmoid_focal_loss. Graded once with pytest autograder/."""
    tmp = tmp_path_factory.mktemp("attacked")
    results_path = tmp / "results.json"
    for path in PLANTED:  # another copy of the answers elsewhere on the machine, world-readable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the model answers")
        path.chmod(0o644)
    sub = copy_homework(tmp / "sub")
    before = _digests()
    nb = sub / MATCHING
    load_attack = (HOSTILE_HELPERS + f"if _hostile_writes() or _hostile_reads() or _hostile_connect({listener}):\n"
                   f"    raise RuntimeError('an attack at load time worked')\n"
                   f"_hostile_survivor({str(results_path)!r})\n")
    inject(nb, "encode", at_load=load_attack, in_body="""
        if _hostile_writes():
            raise RuntimeError("wrote kit files")
        """)
    inject(nb, "decode", in_body="""
        if _hostile_reads() or _hostile_imports():
            raise RuntimeError(f"read or imported answers: {_hostile_reads() + _hostile_imports()}")
        """)
    inject(nb, "decode_landm", in_body=f"""
        if _hostile_connect({listener}):
            raise RuntimeError("reached the network")
        """)
    inject(nb, "encode_landm", in_body=f"_hostile_survivor({str(results_path)!r})\n")
    inject(nb, "intersect", in_body="""
        print("x" * (10 * 2**20))
        import os as _os2
        _os2.write(2, b"y" * (10 * 2**20))
        _chunk, _written = b"z" * (64 * 2**20), 0
        try:  # 8 files of 192 MiB, each under the per-file cap: the scratch folder's total must stop it
            for _k in range(8):
                with open(f"flood{_k}.bin", "wb") as _f:
                    for _ in range(3):
                        _written += _f.write(_chunk)
        except OSError:
            pass
        for _k in range(8):
            if _os2.path.exists(f"flood{_k}.bin"):
                _os2.remove(f"flood{_k}.bin")
        if _written > 2**30:
            raise RuntimeError(f"wrote {_written >> 20} MiB into the scratch folder")
        """)
    inject(sub / "retinaface/2_model.ipynb", "landmark_head", at_load="""
        _hog = bytearray(6 * 2**30)  # over the 4 GiB cap while the notebook loads
        """)
    inject(sub / "retinaface/3_anchors.ipynb", "prior_box", at_load="""
        import threading, time
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        """)
    inject(nb, "jaccard", replace="""
        import torchvision
        def jaccard(box_a, box_b):
            return torchvision.ops.box_iou(box_a, box_b)
        """)
    inject(nb, "nms", replace="""
        from torchvision.ops import nms as my_nms
        def nms(dets, thresh):
            return my_nms(dets[:, :4], dets[:, 4], thresh)
        """)
    inject(sub / LOSS, "focal_loss", replace="""
        import torchvision
        def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
            return torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
        """)
    try:
        results, output, _ = grade(sub, results_path, "--unit-timeout", UNIT_TIMEOUT)
        written = results_path.read_text() if results_path.exists() else ""
        time.sleep(2)  # a survivor would overwrite results.json now
    finally:
        for path in PLANTED:
            shutil.rmtree(path.parent, ignore_errors=True)
        survivors = _survivors()
        for pid in survivors:  # never leave one behind, even when the test fails
            os.kill(pid, 9)
    return {"results": results, "output": output, "before": before, "after": _digests(),
            "written": written, "final": results_path.read_text() if results_path.exists() else "",
            "survivors": survivors}


FORBIDDEN_CALLS = {"jaccard": "torchvision.ops.box_iou", "nms": "torchvision.ops.nms",
                   "focal_loss": "torchvision.ops.sigmoid_focal_loss"}


def test_kit_files_are_untouched_and_attacking_units_keep_their_points(attacked):
    assert attacked["after"] == attacked["before"]
    assert not (REFERENCES.parent / "extra.pt").exists()
    scores = scores_by_unit(attacked["results"])
    for unit, (score, max_score) in scores.items():
        # match calls jaccard: allowed there; these call an attacked unit or left a thread running:
        # postprocess calls nms, match_cascade (which forbids box_iou itself) calls jaccard, and
        # cascade_loss calls match_cascade
        if unit not in FORBIDDEN_CALLS and unit not in ("prior_box", "landmark_head"):
            assert score == max_score > 0, (unit, scores, attacked["output"][-3000:])


def test_callers_of_a_unit_that_calls_the_library_op_are_not_charged_again(attacked):
    """postprocess calls nms, match_cascade calls jaccard (both forbid the op too): the call is
    charged once, to the cell that makes it."""
    outputs = " ".join(t["output"] for t in attacked["results"]["tests"]
                       if t["name"].split(":")[0] in ("postprocess", "match_cascade", "cascade_loss"))
    assert "forbidden call" not in outputs, outputs


def test_memory_is_capped_while_the_notebook_loads(attacked):
    scores = scores_by_unit(attacked["results"])
    assert scores["landmark_head"][0] == 0 < scores["landmark_head"][1]
    outputs = " ".join(t["output"] for t in attacked["results"]["tests"] if t["name"].startswith("landmark_head:"))
    assert "MemoryError" in outputs or "memory" in outputs, outputs


def test_a_thread_left_running_at_load_time_skips_only_that_cell(attacked):
    """It would keep running in the worker, outside every unit and its watch."""
    scores = scores_by_unit(attacked["results"])
    assert scores["prior_box"][0] == 0 < scores["prior_box"][1]
    assert "'prior_box' left a thread running after it loaded" in attacked["results"]["output"]


def test_no_process_survives_and_results_json_is_the_graders(attacked):
    assert attacked["survivors"] == []
    assert attacked["final"] == attacked["written"]
    assert json.loads(attacked["final"])["score"] == attacked["results"]["score"] < 999


def test_library_ops_the_exercise_asks_for_score_zero_naming_the_call(attacked):
    scores = scores_by_unit(attacked["results"])
    for unit, call in FORBIDDEN_CALLS.items():
        assert scores[unit][0] == 0 < scores[unit][1], (unit, scores)
        outputs = [t["output"] for t in attacked["results"]["tests"] if t["name"].startswith(unit + ":")]
        assert all("forbidden call" in o and call in o for o in outputs), (unit, outputs)


def test_isolation_is_reported_on(attacked):
    assert "file isolation is off" not in attacked["output"]


def test_forbidden_watch_catches_every_route():
    """By name, by an alias taken before, through torch.ops, through a re-imported module; never
    outside the watched call (the kit building a case)."""
    import importlib

    import torch
    import torchvision
    from torchvision.ops import nms as alias

    from autograder.sandbox.forbidden import ForbiddenCalls
    from autograder.retinaface.cases import NMS_OPS

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    watch = ForbiddenCalls(NMS_OPS)
    try:
        watch.install()
        expected = alias(boxes, scores, 0.5)
        assert watch.calls == []
        reloaded = importlib.reload(importlib.import_module("torchvision.ops.boxes")).nms
        routes = {"torchvision.ops.nms": lambda: torchvision.ops.nms(boxes, scores, 0.5),
                  "torchvision.ops.nms ": lambda: alias(boxes, scores, 0.5),
                  "torch.ops.torchvision.nms": lambda: torch.ops.torchvision.nms(boxes, scores, 0.5),
                  "torch.ops.torchvision.nms  ": lambda: reloaded(boxes, scores, 0.5)}
        for name, call in routes.items():
            watch.calls.clear()
            with watch:
                assert torch.equal(call(), expected)
            assert [c.split(" ")[0] for c in watch.calls] == [name.strip()], (name, watch.calls)
    finally:
        watch.uninstall()
        importlib.reload(importlib.import_module("torchvision.ops.boxes"))


def test_a_forbidden_call_is_charged_to_the_answer_cell_that_makes_it():
    """postprocess calling the student's nms, which calls torchvision's, is nms's mistake (charged
    once, there); a call routed through a cell whose unit does not forbid the op is still charged."""
    import torch
    import torchvision  # noqa: F401  (the cells below use it)

    from autograder.retinaface.cases import NMS_OPS
    from autograder.sandbox.forbidden import ForbiddenCalls

    def cell(source: str, grade_id: str, namespace: dict) -> None:
        exec(compile(textwrap.dedent(source), f"<4_matching_nms.ipynb cell 3: {grade_id}>", "exec"), namespace)

    ns = {"torch": torch, "torchvision": torchvision}
    cell("def nms(boxes, scores):\n    return torchvision.ops.nms(boxes, scores, 0.5)\n", "nms", ns)
    cell("def encode(boxes, scores):\n    return torchvision.ops.nms(boxes, scores, 0.5)\n", "encode", ns)
    cell("def postprocess(boxes, scores, via):\n    return via(boxes, scores)\n", "postprocess", ns)
    boxes, scores = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8])
    for via, charged_elsewhere, expected in ((ns["nms"], {"nms": NMS_OPS}, []),
                                             (ns["nms"], {}, ["torchvision.ops.nms"]),
                                             (ns["encode"], {"nms": NMS_OPS, "encode": ()},
                                              ["torchvision.ops.nms"])):
        watch = ForbiddenCalls(NMS_OPS, charged_elsewhere)
        try:
            watch.install()  # once per forked unit in the worker: undone after each round here
            with watch:
                ns["postprocess"](boxes, scores, via)
        finally:
            watch.uninstall()
        assert [c.split(" ")[0] for c in watch.calls] == expected, (charged_elsewhere, watch.calls)


def test_dispatcher_level_call_flood_and_killed_unit(tmp_path):
    """torch.ops.torchvision.nms through an alias of torch.ops; a gigabyte print (bounded in time)
    fills neither disk nor memory; a unit killed at its time limit leaves no scratch files."""
    from autograder.sandbox.supervisor import Sandbox

    sub = copy_homework(tmp_path / "sub")
    inject(sub / MATCHING, "nms", replace="""
        import torch
        _ops = getattr(torch, "ops")
        def nms(dets, thresh):
            return _ops.torchvision.nms(dets[:, :4], dets[:, 4], thresh)
        """)
    inject(sub / MATCHING, "decode", in_body="""
        import sys as _sys, time as _time
        _chunk, _end = "z" * 2**20, _time.monotonic() + 2
        for _ in range(0 if globals().get("_flooded") else 1024):  # once per unit, not per case
            globals()["_flooded"] = True
            if _time.monotonic() > _end:
                break
            _sys.stdout.write(_chunk)
        """)
    inject(sub / MATCHING, "encode", in_body=f"""
        import tempfile as _tempfile
        with open(_tempfile.gettempdir() + "/{MARKER}", "w") as _f:
            _f.write("left behind")
        while True:
            pass
        """)
    sandbox = Sandbox("retinaface", sub / "retinaface", REPO_ROOT / "assignments" / "retinaface", unit_timeout=8)
    try:
        sandbox.start()
        free = shutil.disk_usage(sandbox.workdir).free
        nms = sandbox.run("nms")
        assert nms.status == "ok" and nms.cases, nms.detail
        assert all(c.kind == "forbidden" and "torch.ops.torchvision.nms" in c.message
                   for c in nms.cases.values()), nms.cases
        flood = sandbox.run("decode")
        assert flood.status == "ok" and all(c.ok for c in flood.cases.values()), flood.detail
        assert len(flood.output) < 4000 and "earlier bytes of output dropped" in flood.output
        assert free - shutil.disk_usage(sandbox.workdir).free < 100 * 2**20
        killed = sandbox.run("encode")
        assert killed.status == "timeout"
        left = [p for p in sandbox.scratch.rglob("*") if MARKER in p.name]
        assert left == [], left
        assert sandbox.run("intersect").status == "ok"  # the next unit runs normally
    finally:
        sandbox.close()


def test_without_namespaces_grading_notes_it_in_one_line(monkeypatch, tmp_path):
    """macOS or a laptop without namespaces: nothing is confined, and the result says so."""
    from autograder.sandbox import isolation

    monkeypatch.setattr(sys, "platform", "darwin")
    confinement = isolation.confine([tmp_path], [REPO_ROOT], [REFERENCES.parent])
    assert (confinement.mode, confinement.files, confinement.note) == ("off", False, isolation.FILES_NOTE)
    assert "\n" not in isolation.FILES_NOTE and "file isolation is off" in isolation.FILES_NOTE


def test_result_files_are_read_without_following_links(tmp_path):
    """A unit cannot make the scoring side read another file (e.g. the references) as its result."""
    import torch

    from autograder.sandbox.supervisor import read_result

    real = tmp_path / "real.pt"
    torch.save({"cases": {}}, real)
    (tmp_path / "link.pt").symlink_to(real)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert read_result(real) == {"cases": {}}
    assert read_result(tmp_path / "link.pt") is None
    assert read_result(tmp_path / "junk.pt") is None
    assert read_result(tmp_path / "missing.pt") is None


def _call_at_solution_start(notebook: Path, grade_id: str, code: str) -> None:
    """Put ``code`` at the start of the answer's first solution block, at the block's indentation."""
    def edit(cells):
        cell = next(c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
        source = "".join(cell["source"])
        start = source.index("### BEGIN SOLUTION")
        indent = source[source.rfind("\n", 0, start) + 1:start]
        end = source.index("\n", start) + 1
        cell["source"] = source[:end] + textwrap.indent(textwrap.dedent(code), indent) + source[end:]
    edit_cells(notebook, edit)


# hw -> [(notebook, unit, a call of the library op the exercise asks for, the name the feedback gives)]
SHORTCUTS = {
    "rfcn": [("1_anchors_boxes.ipynb", "nms_vectorised",
              "import torchvision\ntorchvision.ops.boxes._box_inter_union(boxes[:1, :4], boxes[:1, :4])\n",
              "torchvision.ops.boxes._box_inter_union"),
             ("3_targets_losses.ipynb", "smooth_l1", "import torch\ntorch._C._nn.smooth_l1_loss(x, x, 1, 1.0)\n",
              "torch.ops.aten.smooth_l1_loss")],
    "tinaface": [("2_anchors_losses.ipynb", "diou_loss",
                  "import torchvision\ntorchvision.ops.box_iou(pred, target).diagonal()\n", "torchvision.ops.box_iou"),
                 ("2_anchors_losses.ipynb", "iou_aware_loss",
                  "import torchvision\ntorchvision.ops.box_iou(pred_boxes, gt_boxes)\n", "torchvision.ops.box_iou")],
    "dsfd": [("1_model.ipynb", "l2norm", "import torch.nn.functional as _F\n_F.normalize(torch.ones(2, 3), dim=1)\n",
              "torch.nn.functional.normalize"),
             ("2_efficientnet_scaling.ipynb", "compound_scaling",
              "import torchvision\ntorchvision.models.efficientnet._make_divisible(30, 8)\n",
              "torchvision.models.efficientnet._make_divisible")],
}


@pytest.mark.parametrize("hw", sorted(SHORTCUTS))
def test_library_shortcuts_of_the_extension_homeworks_score_zero(hw, tmp_path):
    """Each call costs its own unit only (charge once: the units calling it keep their points)."""
    sub = copy_homework(tmp_path / "sub", hw)
    for notebook, unit, code, _ in SHORTCUTS[hw]:
        _call_at_solution_start(sub / hw / notebook, unit, code)
    results, output, _ = grade(sub, tmp_path / "results.json", "--hw", hw, "--unit-timeout", "60")
    scores = scores_by_unit(results)
    charged = {unit for _, unit, _, _ in SHORTCUTS[hw]}
    for _, unit, _, name in SHORTCUTS[hw]:
        outputs = [t["output"] for t in results["tests"] if t["name"].startswith(unit + ":")]
        assert scores[unit][0] == 0 < scores[unit][1], (unit, scores)
        assert any("forbidden call" in o and name in o for o in outputs), (unit, outputs)
    for unit, (score, max_score) in scores.items():
        if unit not in charged:
            assert score == max_score > 0, (unit, scores, output[-2000:])


def test_the_watch_leaves_the_library_as_it_found_it():
    """Installed twice in one process it never wraps a wrapper (which would recurse); uninstalled,
    every function has its own code again."""
    import torch
    import torchvision

    from autograder.retinaface.cases import NMS_OPS
    from autograder.sandbox.forbidden import ForbiddenCalls

    functions = [torchvision.ops.nms, torchvision.ops.boxes.nms, torchvision.ops.batched_nms]
    codes = [f.__code__ for f in functions]
    first, second = ForbiddenCalls(NMS_OPS), ForbiddenCalls(NMS_OPS)
    try:
        first.install()
        second.install()
        assert second._wrapped == []
        boxes, scores = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8])
        assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0]
    finally:
        second.uninstall()
        first.uninstall()
    assert [f.__code__ for f in functions] == codes
