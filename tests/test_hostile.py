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
    focal loss calling sigmoid_focal_loss; and COMMON_ATTACKS["retinaface"] (imports of the kit's
    reference code, reads of its copies, the grader's environment, 2 GiB in the temp folder, 6 GiB in
    a unit). Graded once with pytest autograder/ by a grader whose environment holds a secret."""
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
    before_secret = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = SECRET  # the grader's environment holds a secret
    try:
        _add_common_attacks(sub, "retinaface", skip=("memory_at_load",))  # landmark_head allocates at load
        results, output, _ = grade(sub, results_path, "--unit-timeout", UNIT_TIMEOUT)
        written = results_path.read_text() if results_path.exists() else ""
        time.sleep(2)  # a survivor would overwrite results.json now
    finally:
        if before_secret is None:
            os.environ.pop(SECRET_NAME, None)
        else:
            os.environ[SECRET_NAME] = before_secret
        _remove_planted("retinaface")
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
        if unit not in FORBIDDEN_CALLS and unit not in ("prior_box", *MEMORY_UNITS["retinaface"]):
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
              "import torchvision\ntorchvision.ops.boxes._box_inter_union(boxes[:1, :4], boxes[:1, :4])\n"
              "torchvision.ops.nms(boxes, scores, iou_threshold)\n",
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


# -- the other attacks, on every homework ---------------------------------------------------------
# hw -> {attack: (notebook, unit)}: units that no other unit calls where the attack costs the unit
# (memory), so charge-once has nothing to re-grade. RetinaFace's go into ``attacked`` (its
# landmark_head is the one allocating at load time), the others' into the submission that also
# holds their SHORTCUTS: one grading per homework.
COMMON_ATTACKS = {
    "retinaface": {"imports": ("1_data.ipynb", "face_stats"), "reads": ("1_data.ipynb", "overlap_fraction"),
                   "environment": ("1_data.ipynb", "out_of_range"), "scratch": ("1_data.ipynb", "widerface_dataset"),
                   "memory_in_unit": ("1_data.ipynb", "centre_heatmap"),
                   "memory_at_load": ("2_model.ipynb", "landmark_head")},
    "dsfd": {"imports": ("1_model.ipynb", "upsample_product"), "reads": ("1_model.ipynb", "fem"),
             "environment": ("3_anchors_loss_sampling.ipynb", "pal_priors"),
             "scratch": ("3_anchors_loss_sampling.ipynb", "anchor_compensation"),
             "memory_in_unit": ("3_anchors_loss_sampling.ipynb", "data_anchor_sampling"),
             "memory_at_load": ("3_anchors_loss_sampling.ipynb", "progressive_anchor_loss")},
    "tinaface": {"imports": ("2_anchors_losses.ipynb", "tinaface_anchors"),
                 "reads": ("2_anchors_losses.ipynb", "max_iou_assign"),
                 "environment": ("2_anchors_losses.ipynb", "delta_xywh_encode"),
                 "scratch": ("2_anchors_losses.ipynb", "delta_xywh_decode"),
                 "memory_in_unit": ("2_anchors_losses.ipynb", "tinaface_scores"),
                 "memory_at_load": ("2_anchors_losses.ipynb", "warmup_cosine_lr")},
    "rfcn": {"imports": ("1_anchors_boxes.ipynb", "generate_anchors"), "reads": ("1_anchors_boxes.ipynb", "shift_anchors"),
             "environment": ("1_anchors_boxes.ipynb", "bbox_transform"), "scratch": ("1_anchors_boxes.ipynb", "clip_boxes"),
             "memory_in_unit": ("3_targets_losses.ipynb", "anchor_target_layer"),
             "memory_at_load": ("3_targets_losses.ipynb", "proposal_target_layer")},
}
# The kit's reference code, imported from an answer cell: (module, a name it defines).
# (The worker's view of autograder/<hw>/ holds cases*.py, inputs.py and library_ops.py only.)
_ANY_HOMEWORK = [("autograder.retinaface.mistakes", "greedy_nms"), ("autograder.staff.record_oracles", None)]
KIT_IMPORTS = {"retinaface": [("autograder.retinaface.oracles", "prior_boxes"), ("autograder.retinaface.checks", None),
                              ("autograder.retinaface.oracles_loss", None), *_ANY_HOMEWORK],
               "dsfd": [("autograder.dsfd.oracles", "l2norm"), ("autograder.dsfd.checks", None), *_ANY_HOMEWORK],
               "tinaface": [("autograder.tinaface.oracles", "anchors"), ("autograder.tinaface.checks", None),
                            *_ANY_HOMEWORK],
               "rfcn": [("autograder.rfcn.oracles", "generate_anchors"), ("autograder.rfcn.checks_targets", None),
                        *_ANY_HOMEWORK]}
SECRET_NAME, SECRET = "FACEKIT_HOSTILE_GRADER_TOKEN", "facekit-grader-secret-5f1c9a"
MODEL_ANSWER = "facekit-hostile-model-answer"   # planted in copies of the kit outside the view
MEMORY_UNITS = {hw: {a["memory_in_unit"][1], a["memory_at_load"][1]} for hw, a in COMMON_ATTACKS.items()}


def _imports_code(hw: str) -> str:
    lines = ["_got = []\n"]
    for module, name in KIT_IMPORTS[hw]:
        statement = f"from {module} import {name} as _kit" if name else f"import {module} as _kit"
        lines.append(f"try:\n    {statement}\n    _got.append({module + ('.' + name if name else '')!r})\n"
                     f"except ImportError:\n    pass\n")
    lines.append("if _got:\n    raise RuntimeError(f'imported the kit\\'s reference code: {_got}')\n")
    return "".join(lines)


def _planted_kit_copies(hw: str) -> list[Path]:
    """Copies of the kit and the staff's outputs that a careless machine might hold (world-readable):
    a Gradescope zip in outputs/, a checkout elsewhere. Removed after grading."""
    import zipfile

    dist = REPO_ROOT / "outputs" / f"hostile-probe-{hw}" / "dist"
    kit = Path(f"/tmp/facekit-hostile-kit-{hw}")
    dist.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dist / f"{hw}-autograder.zip", "w") as zf:  # stored: the marker stays plain text
        zf.writestr(f"solutions/{hw}/answers.txt", MODEL_ANSWER)
    (kit / "autograder" / "references").mkdir(parents=True, exist_ok=True)
    (kit / "solutions" / hw).mkdir(parents=True, exist_ok=True)
    (kit / "solutions" / hw / "answers.ipynb").write_text(MODEL_ANSWER)
    for ref in (REPO_ROOT / "autograder" / "references").glob(f"{hw}*"):
        shutil.copy(ref, kit / "autograder" / "references" / ref.name)
    paths = [dist / f"{hw}-autograder.zip", kit / "solutions" / hw / "answers.ipynb",
             *sorted((kit / "autograder" / "references").iterdir())]
    for path in [dist.parent, dist, *paths, *kit.rglob("*"), kit]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return paths


def _remove_planted(hw: str) -> None:
    shutil.rmtree(REPO_ROOT / "outputs" / f"hostile-probe-{hw}", ignore_errors=True)
    shutil.rmtree(f"/tmp/facekit-hostile-kit-{hw}", ignore_errors=True)


def _reads_code(hw: str, planted: list[Path]) -> str:
    """Absolute paths of the real kit (references, solutions, staff code, outputs/) and the planted copies."""
    real = [*(REPO_ROOT / "autograder" / "references").glob("*"), *(REPO_ROOT / "solutions" / hw).glob("*.ipynb"),
            REPO_ROOT / "autograder" / hw / "oracles.py", REPO_ROOT / "autograder" / "staff" / "record_oracles.py",
            *(REPO_ROOT / "outputs" / "dist").glob("*"), *Path("/work/shared/references").glob("*"),
            REPO_ROOT / ".git" / "HEAD"]
    paths = sorted({str(p) for p in [*real, *planted]})
    return (f"_read = []\nfor _path in {paths!r}:\n    try:\n        with open(_path, 'rb') as _f:\n"
            f"            _read.append((_path, _f.read(4096)))\n    except OSError:\n        pass\n"
            f"if _read:\n    print(_read)  # into the feedback, if it could\n"
            f"    raise RuntimeError(f'read the kit from outside the view: {{_read}}')\n")


ENVIRONMENT_CODE = f"""\
import os as _os
_seen = [_k for _k, _v in _os.environ.items() if _k == {SECRET_NAME!r} or {SECRET!r} in _v]
for _pid in ["self", "thread-self", *[_p for _p in _os.listdir("/proc") if _p.isdigit()]]:
    try:
        with open(f"/proc/{{_pid}}/environ", "rb") as _f:
            if {SECRET!r}.encode() in _f.read():
                _seen.append(f"/proc/{{_pid}}/environ")
    except OSError:
        pass
if _seen:
    print({SECRET!r}, _seen)
    raise RuntimeError(f"saw the grader's environment: {{_seen}}")
"""
SCRATCH_CODE = """\
import os as _os, tempfile as _tempfile
if not globals().get("_flooded_tmp"):  # once per unit, not per case
    globals()["_flooded_tmp"] = True
    _chunk, _written, _tmp = b"t" * (64 * 2**20), 0, _tempfile.gettempdir()
    try:  # 2 GiB in files of 128 MiB (under the per-file cap): the scratch folder's size must stop it
        for _k in range(16):
            with open(_os.path.join(_tmp, f"big{_k}.bin"), "wb") as _f:
                for _ in range(2):
                    _written += _f.write(_chunk)
    except OSError:
        pass
    for _k in range(16):
        if _os.path.exists(_os.path.join(_tmp, f"big{_k}.bin")):
            _os.remove(_os.path.join(_tmp, f"big{_k}.bin"))
    if _written > 2**30:
        raise RuntimeError(f"wrote {_written >> 20} MiB into the temp folder")
"""
MEMORY_IN_UNIT_CODE = "_hog = bytearray(6 * 2**30)  # over the 4 GiB cap, inside the unit\ndel _hog\n"
MEMORY_AT_LOAD_CODE = "_hog_at_load = bytearray(6 * 2**30)  # over the 4 GiB cap while the notebook loads\n"


def _add_common_attacks(sub: Path, hw: str, skip: tuple[str, ...] = ()) -> None:
    """Every attack of COMMON_ATTACKS[hw] into the submission ``sub`` (files planted: see _remove_planted)."""
    codes = {"imports": _imports_code(hw), "reads": _reads_code(hw, _planted_kit_copies(hw)),
             "environment": ENVIRONMENT_CODE, "scratch": SCRATCH_CODE, "memory_in_unit": MEMORY_IN_UNIT_CODE}
    for attack, (notebook, unit) in COMMON_ATTACKS[hw].items():
        if attack in skip:
            continue
        if attack == "memory_at_load":
            inject(sub / hw / notebook, unit, at_load=MEMORY_AT_LOAD_CODE)
        else:
            _call_at_solution_start(sub / hw / notebook, unit, codes[attack])


_EXTENSION_GRADED: dict[str, dict] = {}


def _graded_extension(hw: str, root: Path) -> dict:
    """SHORTCUTS[hw] and COMMON_ATTACKS[hw] in one submission, graded once with ``pytest autograder/``
    by a grader whose environment holds a secret."""
    if hw not in _EXTENSION_GRADED:
        sub = copy_homework(root / "sub", hw)
        for notebook, unit, code, _ in SHORTCUTS[hw]:
            _call_at_solution_start(sub / hw / notebook, unit, code)
        before = os.environ.get(SECRET_NAME)
        os.environ[SECRET_NAME] = SECRET
        try:
            _add_common_attacks(sub, hw)
            results, output, _ = grade(sub, root / "results.json", "--hw", hw, "--unit-timeout", "60")
        finally:
            _remove_planted(hw)
            if before is None:
                os.environ.pop(SECRET_NAME, None)
            else:
                os.environ[SECRET_NAME] = before
        _EXTENSION_GRADED[hw] = {"results": results, "output": output}
    return _EXTENSION_GRADED[hw]


@pytest.fixture
def graded(request, tmp_path_factory):
    """graded(hw): {results, output} of the submission holding COMMON_ATTACKS[hw] (graded once)."""
    def get(hw: str) -> dict:
        if hw == "retinaface":
            return request.getfixturevalue("attacked")
        return _graded_extension(hw, tmp_path_factory.mktemp(f"extension-{hw}"))
    return get


def _unit_outputs(results: dict, unit: str) -> list[str]:
    return [t["output"] for t in results["tests"] if t["name"].split(":")[0] == unit]


@pytest.mark.parametrize("hw", sorted(SHORTCUTS))
def test_library_shortcuts_of_the_extension_homeworks_score_zero(hw, graded):
    """Each call costs its own unit only (charge once: the units calling it keep their points)."""
    results, output = graded(hw)["results"], graded(hw)["output"]
    scores = scores_by_unit(results)
    charged = {unit for _, unit, _, _ in SHORTCUTS[hw]}
    for _, unit, _, name in SHORTCUTS[hw]:
        outputs = _unit_outputs(results, unit)
        assert scores[unit][0] == 0 < scores[unit][1], (unit, scores)
        assert any("forbidden call" in o and name in o for o in outputs), (unit, outputs)
    for unit, (score, max_score) in scores.items():
        if unit not in charged | MEMORY_UNITS[hw]:
            assert score == max_score > 0, (unit, scores, output[-2000:])


# (hw, attack) -> the hole, for attacks that get through
COMMON_HOLES: dict[tuple[str, str], str] = {}


def _common_params(*attacks: str):
    for hw in sorted(COMMON_ATTACKS):
        for attack in attacks:
            hole = COMMON_HOLES.get((hw, attack))
            yield pytest.param(hw, attack, id=f"{hw}-{attack}",
                               marks=[pytest.mark.xfail(strict=True, reason=hole)] if hole else [])


@pytest.mark.parametrize("hw, attack", list(_common_params("imports", "reads", "environment", "scratch")))
def test_attacks_that_must_fail_in_the_worker_fail_and_leak_nothing(hw, attack, graded):
    """The cell raises if the attack works: the unit keeps its points only if it failed. Nothing of
    what it went for reaches the feedback: the kit's code, the planted model answers, the secret."""
    results, output = graded(hw)["results"], graded(hw)["output"]
    unit = COMMON_ATTACKS[hw][attack][1]
    score, max_score = scores_by_unit(results)[unit]
    assert score == max_score > 0, (unit, _unit_outputs(results, unit))
    shown = json.dumps(results) + output
    for leak in (SECRET, MODEL_ANSWER, "### BEGIN SOLUTION", "def greedy_nms", "read the kit", "imported the kit",
                 "saw the grader", "into the temp folder"):
        assert leak not in shown, (unit, leak)


@pytest.mark.parametrize("hw, attack", list(_common_params("memory_in_unit", "memory_at_load")))
def test_six_gigabytes_are_refused_costing_only_that_unit(hw, attack, graded):
    results = graded(hw)["results"]
    unit = COMMON_ATTACKS[hw][attack][1]
    scores = scores_by_unit(results)
    assert scores[unit][0] == 0 < scores[unit][1], (unit, scores)
    outputs = " ".join(_unit_outputs(results, unit))
    assert "MemoryError" in outputs or "memory" in outputs, outputs
    for other in sorted({u for _, u in COMMON_ATTACKS[hw].values()} - MEMORY_UNITS[hw]):  # the cells beside it
        assert scores[other][0] == scores[other][1] > 0, (other, scores)


def test_a_forbidden_call_costs_only_its_unit_in_the_extension_homeworks(graded):
    """Charge once: R-FCN's nms_vectorised calls torchvision.ops.nms; proposal_layer and ohem_select,
    which call nms_vectorised and forbid nms too, keep their points. DSFD's model calls l2norm."""
    for hw, callers in (("rfcn", ("proposal_layer", "ohem_select")), ("dsfd", ("dsfd",))):
        results = graded(hw)["results"]
        scores = scores_by_unit(results)
        for unit in callers:
            assert scores[unit][0] == scores[unit][1] > 0, (hw, unit, scores)
            assert not any("forbidden call" in o for o in _unit_outputs(results, unit)), (hw, unit)
    nms = " ".join(_unit_outputs(graded("rfcn")["results"], "nms_vectorised"))
    assert "torchvision.ops.nms" in nms, nms


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


# -- switching the library watch off ----------------------------------------------------------------
# Each attack turns the watch off (or gets an unwatched copy of the op) and then calls an op the unit
# forbids, at the start of the answer's solution (the solution then runs as written, so the unit
# would score full points if the call went unseen). The unit must score 0 for the call or the staff
# review must list its cell. Graded per homework on the attacked units only (``engine.run_checks``
# with the review the engine adds where the solutions are on disk), in rounds of distinct units.
NMS_CALL = "torch.ops.torchvision.nms(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8]), 0.5)"
TV_NMS_CALL = "torchvision.ops.nms(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8]), 0.5)"
BOX_IOU_CALL = "torchvision.ops.box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[1.0, 1, 11, 11]]))"
PSROI_CALL = ("torch.ops.torchvision.ps_roi_pool(torch.rand(1, 4, 4, 4), torch.tensor([[0.0, 0, 0, 3, 3]]), "
              "1.0, 2, 2)")
DEFORM_CALL = ("torch.ops.torchvision.deform_conv2d(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 1, 1), "
               "torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 3, 3), torch.zeros(1), 1, 1, 0, 0, 1, 1, 1, 1, False)")
SMOOTH_L1_CALL = "torch.ops.aten.smooth_l1_loss(torch.ones(3), torch.zeros(3), 1, 1.0)"
NORMALIZE_CALL = "torch.nn.functional.normalize(torch.ones(2, 3), dim=1)"
DIVISIBLE_CALL = "torchvision.models.efficientnet._make_divisible(30, 8)"


def _fresh_copy(module: str, call: str) -> str:
    """A reload that the review cannot see: a new module object run by the module's own loader."""
    return (f"import torch, torchvision\n_mod = {module}\n_new = type(_mod)(_mod.__name__)\n"
            f"_mod.__spec__.loader.exec_module(_new)\n_new.{call}\n")


WATCH_OFF_CODE = {
    # a dispatch mode switched off: the op reached through torch.ops is not seen by the mode
    "modes": lambda call: ("import torch, torchvision\nimport torch.utils._python_dispatch as _pd\n"
                           f"with _pd._disable_current_modes():\n    {call}\n"),
    # the same, spelled so that no name in the cell says so
    "modes_spelled_out": lambda call: (
        "import torch, torchvision\n"
        "_pd = getattr(getattr(torch, 'utils'), '_python' + '_dispatch')\n"
        f"with getattr(_pd, '_disable' + '_current_modes')():\n    {call}\n"),
    # the Python dispatch key excluded: no mode runs at all
    "dispatch_key_guard": lambda call: (
        "import torch, torchvision\n"
        "with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)):\n"
        f"    {call}\n"),
    # the watch found with gc and switched off
    "gc": lambda call: ("import torch, torchvision, gc as _gc\nfor _o in _gc.get_objects():\n"
                        "    if type(_o).__name__ == 'ForbiddenCalls':\n        _o._active = False\n"
                        f"{call}\n"),
    # the watch found in the caller's frames and its record cleared after the call
    "frames": lambda call: ("import torch, torchvision, sys as _sys\n"
                            f"{call}\n_f = _sys._getframe()\nwhile _f is not None:\n"
                            "    for _v in list(_f.f_locals.values()):\n"
                            "        if type(_v).__name__ == 'ForbiddenCalls':\n            _v.calls.clear()\n"
                            "    _f = _f.f_back\n"),
    # the wrapped function's own code, taken back from the hook's closure
    "unwrap": lambda call: (
        "import torch, torchvision\n_fn = " + call.split("(", 1)[0] + "\n"
        "for _hook in _fn.__globals__['__facekit_forbidden_hooks__'].values():\n"
        "    for _cell in _hook.__closure__ or ():\n"
        "        if getattr(_cell.cell_contents, '__name__', '') == _fn.__name__:\n"
        "            _cell.cell_contents(" + call.split("(", 1)[1] + "\n"),
}


def _reload(module: str, call: str) -> str:
    return f"import torch, torchvision, importlib as _il\n_il.reload({module}).{call}\n"


# hw -> rounds of {unit: (notebook, attack, code)}; a unit appears at most once per round
WATCH_OFF = {
    "retinaface": [{
        "nms": ("4_matching_nms.ipynb", "modes", WATCH_OFF_CODE["modes"](NMS_CALL)),
        "postprocess": ("6_testing_finetuning.ipynb", "dispatch_key_guard",
                        WATCH_OFF_CODE["dispatch_key_guard"](NMS_CALL)),
        "intersect": ("4_matching_nms.ipynb", "gc", WATCH_OFF_CODE["gc"](BOX_IOU_CALL)),
        "match_cascade": ("7_cascade_regression.ipynb", "frames", WATCH_OFF_CODE["frames"](BOX_IOU_CALL)),
        "jaccard": ("4_matching_nms.ipynb", "reload", _reload(
            "torchvision.ops.boxes", "box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[1.0, 1, 11, 11]]))")),
        "focal_loss": ("5_loss_training.ipynb", "fresh_module_copy", _fresh_copy(
            "torchvision.ops.focal_loss", "sigmoid_focal_loss(torch.zeros(3), torch.ones(3))")),
    }],
    "rfcn": [{
        "ps_roi_pool": ("2_psroi_model.ipynb", "modes", WATCH_OFF_CODE["modes"](PSROI_CALL)),
        "smooth_l1": ("3_targets_losses.ipynb", "dispatch_key_guard",
                      WATCH_OFF_CODE["dispatch_key_guard"](SMOOTH_L1_CALL)),
        "nms_vectorised": ("1_anchors_boxes.ipynb", "gc", WATCH_OFF_CODE["gc"](TV_NMS_CALL)),
        "proposal_layer": ("3_targets_losses.ipynb", "frames", WATCH_OFF_CODE["frames"](TV_NMS_CALL)),
        "ohem_select": ("3_targets_losses.ipynb", "reload", _reload(
            "torchvision.ops.boxes", "box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[1.0, 1, 11, 11]]))")),
        "rfcn": ("2_psroi_model.ipynb", "modes_spelled_out", WATCH_OFF_CODE["modes_spelled_out"](PSROI_CALL)),
    }, {
        "ohem_select": ("3_targets_losses.ipynb", "fresh_module_copy", _fresh_copy(
            "torchvision.ops.boxes", "box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[1.0, 1, 11, 11]]))")),
    }],
    "tinaface": [{
        "deform_sampling": ("1_model.ipynb", "modes", WATCH_OFF_CODE["modes"](DEFORM_CALL)),
        "sigmoid_focal_loss": ("2_anchors_losses.ipynb", "dispatch_key_guard", WATCH_OFF_CODE["dispatch_key_guard"](
            "torchvision.ops.sigmoid_focal_loss(torch.zeros(3), torch.ones(3))")),
        "diou_loss": ("2_anchors_losses.ipynb", "gc", WATCH_OFF_CODE["gc"](
            "torchvision.ops.distance_box_iou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[0.0, 0, 3, 3]]))")),
        "iou_aware_loss": ("2_anchors_losses.ipynb", "frames", WATCH_OFF_CODE["frames"](BOX_IOU_CALL)),
    }, {
        "deform_sampling": ("1_model.ipynb", "modes_spelled_out", WATCH_OFF_CODE["modes_spelled_out"](DEFORM_CALL)),
        "diou_loss": ("2_anchors_losses.ipynb", "reload", _reload(
            "torchvision.ops.diou_loss",
            "distance_box_iou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[0.0, 0, 3, 3]]))")),
        "sigmoid_focal_loss": ("2_anchors_losses.ipynb", "fresh_module_copy", _fresh_copy(
            "torchvision.ops.focal_loss", "sigmoid_focal_loss(torch.zeros(3), torch.ones(3))")),
    }],
    "dsfd": [{
        "l2norm": ("1_model.ipynb", "modes", WATCH_OFF_CODE["modes"](NORMALIZE_CALL)),
        "compound_scaling": ("2_efficientnet_scaling.ipynb", "dispatch_key_guard",
                             WATCH_OFF_CODE["dispatch_key_guard"](DIVISIBLE_CALL)),
    }, {
        "l2norm": ("1_model.ipynb", "gc", WATCH_OFF_CODE["gc"](NORMALIZE_CALL)),
        "compound_scaling": ("2_efficientnet_scaling.ipynb", "frames", WATCH_OFF_CODE["frames"](DIVISIBLE_CALL)),
    }, {
        # torch.nn.functional cannot be reloaded (its docstrings are added once): the hook's closure instead
        "l2norm": ("1_model.ipynb", "unwrap", WATCH_OFF_CODE["unwrap"](NORMALIZE_CALL)),
        "compound_scaling": ("2_efficientnet_scaling.ipynb", "reload",
                             _reload("torchvision.models._utils", "_make_divisible(30, 8)")),
    }, {
        "compound_scaling": ("2_efficientnet_scaling.ipynb", "fresh_module_copy",
                             _fresh_copy("torchvision.models._utils", "_make_divisible(30, 8)")),
    }],
}
# The attacks that get through (the unit keeps its points and the review does not list the cell).
WATCH_OFF_HOLES: dict[tuple[str, str], str] = {
    # none today: a fresh module copy (__spec__.loader.exec_module) and getattr with a computed name are
    # listed by the staff review; the op's native kernel is gone from a unit that must write it
}
_WATCH_OFF_GRADED: dict[str, dict[str, dict]] = {}


def _grade_watch_off(hw: str, root: Path) -> dict[str, dict]:
    """{attack: {unit, notebook, score, points, feedback, review}}: each round a submission graded on
    its attacked units, with the staff review and the results.json the engine makes of them."""
    from autograder import engine
    from autograder.results import REVIEW_TEST, Report, gradescope_results

    outcome = {}
    for k, attacks in enumerate(WATCH_OFF[hw]):
        sub = copy_homework(root / f"round{k}", hw)
        for unit, (notebook, _, code) in attacks.items():
            _call_at_solution_start(sub / hw / notebook, unit, code)
        options = engine.Options(unit_timeout=60, reference_dir=engine.default_reference_dir(hw))
        folder, notes = engine.stage_submission(hw, sub, root / f"staged{k}")
        checks, worker_notes = engine.run_checks(hw, folder, options, units=set(attacks))
        report = Report(hw, checks, notes + worker_notes)
        engine.staff_review(report, folder, options)
        results = gradescope_results(report)
        [review] = [t["output"].splitlines() for t in results["tests"] if t["name"] == REVIEW_TEST]
        for unit, (notebook, attack, _) in attacks.items():
            mine = [c for c in checks if c.unit == unit]
            assert mine, (unit, notes + worker_notes)
            outcome[attack] = {"unit": unit, "notebook": notebook, "score": sum(c.score for c in mine),
                               "points": sum(c.points for c in mine),
                               "feedback": [f"{c.kind}: {c.feedback}" for c in mine],
                               "review": [line for line in review if line.startswith(f"{unit} ({notebook}, line")]}
    return outcome


def _watch_off_params():
    for hw, rounds in WATCH_OFF.items():
        for attacks in rounds:
            for _, attack, _ in attacks.values():
                hole = WATCH_OFF_HOLES.get((hw, attack))
                yield pytest.param(hw, attack, id=f"{hw}-{attack}",
                                   marks=[pytest.mark.xfail(strict=True, reason=hole)] if hole else [])


@pytest.mark.parametrize("hw, attack", list(_watch_off_params()))
def test_switching_the_library_watch_off_scores_zero_or_is_flagged_for_review(hw, attack, tmp_path_factory):
    """_disable_current_modes, _ExcludeDispatchKeyGuard, the watch found with gc or in the caller's
    frames, a reloaded or freshly loaded library module, the hook's closure: then the forbidden op."""
    if hw not in _WATCH_OFF_GRADED:
        _WATCH_OFF_GRADED[hw] = _grade_watch_off(hw, tmp_path_factory.mktemp(f"watch-off-{hw}"))
    found = _WATCH_OFF_GRADED[hw][attack]
    assert found["points"] > 0, found
    caught = found["score"] == 0 and all("forbidden call" in f for f in found["feedback"])
    assert caught or found["review"], found
