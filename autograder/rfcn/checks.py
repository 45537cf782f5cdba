"""Comparisons for the Face R-FCN units, with feedback that names the classic mistakes: the
1-based anchors of the header comment, torch.round in PS-RoI pooling, bin-major channels, a face
with zero overlap turning every zero-IoU anchor positive, Fast NMS instead of greedy NMS."""
from __future__ import annotations

import torch
import torchvision

from autograder.explain import expect_parameter_shapes, expect_rows, fail, noting
from autograder.feedback import GradingFailure, expect_close, expect_equal, expect_tensor, expect_type
from autograder.rfcn import oracles

EXACT = dict(rtol=0.0, atol=0.0)


def _same(got, want) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.detach().cpu().double(), want.double(), rtol=1e-5, atol=1e-5))


# -- Part 1 ----------------------------------------------------------------------------------------
def check_generate_anchors(submission, names) -> None:
    with noting(submission, "generate_anchors"):
        for name in names:
            got = submission.output("generate_anchors", name)
            want = oracles.generate_anchors(**submission.inputs("generate_anchors", name))
            if _same(got, want + 1):
                raise fail(name, "every coordinate is 1 too large: these are the 1-based MATLAB anchors from "
                                 "the comment at the top of generate_anchors.py (-83 -39 100 56 ...), not what "
                                 "the Python code computes (-84 -40 99 55 ...): the base anchor is "
                                 "(0, 0, base_size - 1, base_size - 1)")
            if isinstance(got, torch.Tensor) and got.shape == want.shape and not _same(got, want) \
                    and _same(got.reshape(-1, 3, 4).transpose(0, 1).reshape(-1, 4) if len(got) % 3 == 0
                              else got, want):
                raise fail(name, "the right anchors in scale-major order: the order is ratio-major (for each "
                                 "ratio, every scale)")
            expect_close(got, want, name, "anchors", check_dtype=False)


def check_shift_anchors(submission, names) -> None:
    with noting(submission, "shift_anchors"):
        for name in names:
            x = submission.inputs("shift_anchors", name)
            want = oracles.shift_anchors(x["base"], x["feat_h"], x["feat_w"], x["stride"])
            expect_rows(submission.output("shift_anchors", name), want, name, "anchors", "[H*W*A, 4]",
                        "rows go row i, then column j, then anchor a (the RPN's flattening order); anchor "
                        "(i, j, a) is base[a] + (j, i, j, i) * stride")


def check_coding(submission, unit: str, names) -> None:
    with noting(submission, unit):
        for name in names:
            x = submission.inputs(unit, name)
            got = submission.output(unit, name)
            if unit == "bbox_transform":
                want = oracles.bbox_transform(x["rois"], x["gt"], x["stds"])
            else:
                want = oracles.bbox_transform_inv(x["rois"], x["deltas"], x["stds"])
            if unit == "bbox_transform" and len(want) and _same(got, oracles.bbox_transform(
                    x["rois"] + torch.tensor([0.0, 0, 1, 1], dtype=x["rois"].dtype), x["gt"] +
                    torch.tensor([0.0, 0, 1, 1], dtype=x["rois"].dtype), x["stds"])):
                raise fail(name, "you use the +1 convention (w = x2 - x1 + 1); this homework is continuous: "
                                 "w = x2 - x1, centre x1 + w / 2")
            expect_close(got, want, name, "deltas" if unit == "bbox_transform" else "boxes")


def check_round_trip(submission, unit: str) -> None:
    from autograder.rfcn.cases import CODING_ROUND_TRIP as name
    with noting(submission, unit):
        x = submission.inputs(unit, name)
        got = submission.output(unit, name)
        want = x["gt"] if unit == "bbox_transform_inv" else x["deltas"]
        expect_close(got, want, name, "round trip", rtol=1e-6, atol=1e-6)


def check_clip(submission, names) -> None:
    with noting(submission, "clip_boxes"):
        for name in names:
            x = submission.inputs("clip_boxes", name)
            height, width = x["image_size"]
            b = x["boxes"]
            want = torch.stack([b[:, 0].clamp(0, width), b[:, 1].clamp(0, height), b[:, 2].clamp(0, width),
                                b[:, 3].clamp(0, height)], 1)
            got = submission.output("clip_boxes", name)
            if len(b) and _same(got, torch.stack([b[:, 0].clamp(0, width - 1), b[:, 1].clamp(0, height - 1),
                                                  b[:, 2].clamp(0, width - 1), b[:, 3].clamp(0, height - 1)], 1)):
                raise fail(name, "you clip to W - 1 / H - 1 (inclusive pixels, py-faster-rcnn); in the continuous "
                                 "convention the image spans 0 ... W, so clip x to [0, W] and y to [0, H]")
            if len(b) and _same(got, torch.stack([b[:, 0].clamp(0, height), b[:, 1].clamp(0, width),
                                                  b[:, 2].clamp(0, height), b[:, 3].clamp(0, width)], 1)):
                raise fail(name, "x is clipped by H and y by W: image_size is (H, W)")
            expect_close(got, want, name, "boxes")


def check_nms(submission, names) -> None:
    with noting(submission, "nms_vectorised"):
        for name in names:
            x = submission.inputs("nms_vectorised", name)
            want = torchvision.ops.nms(x["boxes"], x["scores"], x["iou_threshold"])
            got = submission.output("nms_vectorised", name)
            fast = oracles.fast_nms(x["boxes"], x["scores"], x["iou_threshold"])
            if (isinstance(got, torch.Tensor) and not torch.equal(fast, want) and got.shape == fast.shape
                    and torch.equal(got.cpu(), fast)):
                raise fail(name, "this is Fast NMS (one pass of triu(IoU).max(0)): a box removed by a better "
                                 "box still removes others. Greedy NMS lets only *kept* boxes remove: iterate "
                                 "the step with the kept rows until nothing changes")
            expect_equal(got, want, name, what="kept indices (torchvision.ops.nms order)")


# -- Part 2 ----------------------------------------------------------------------------------------
def check_psroi(submission, names, exact: bool) -> None:
    with noting(submission, "ps_roi_pool"):
        for name in names:
            x = submission.inputs("ps_roi_pool", name)
            args = (x["features"], x["rois"], x["output_size"], x["spatial_scale"])
            want = torchvision.ops.ps_roi_pool(*args)
            got = submission.output("ps_roi_pool", name)
            expect_tensor(got, name)
            if tuple(got.shape) != tuple(want.shape):
                raise fail(name, f"the output should be [R, C_in / (kh * kw), kh, kw] = {list(want.shape)}, "
                                 f"got {list(got.shape)}")
            k = x["output_size"]
            if isinstance(k, int) and not _same(got, want) and len(want):
                scale = x["spatial_scale"]
                if _same(got, oracles.ps_roi_pool(*args[:2], k, scale, half_even=True)):
                    raise fail(name, "torch.round rounds half to even (round(2.5) = 2); torchvision's kernel "
                                     "uses std::round, half away from zero (round(2.5) = 3): write it with "
                                     "torch.trunc and torch.sign")
                if _same(got, oracles.ps_roi_pool(*args[:2], k, scale, bin_major=True)):
                    raise fail(name, "your channels are bin-major ((i * k + j) * C + c); torchvision's (and "
                                     "Caffe R-FCN's) layout is class-major: channel c * k * k + i * k + j")
            if exact:
                expect_close(got, want, name, "pooled scores (exact)", **EXACT)
            else:
                expect_close(got, want, name, "pooled scores", rtol=1e-6, atol=1e-6)


def check_psroi_grad(submission) -> None:
    from autograder.rfcn.cases import PSROI_GRAD as name
    with noting(submission, "ps_roi_pool"):
        x = submission.inputs("ps_roi_pool", name)
        features = x["features"].clone().requires_grad_(True)
        (oracles.ps_roi_pool(features, x["rois"], x["output_size"], x["spatial_scale"]) * x["weights"]).sum().backward()
        got = submission.output("ps_roi_pool", name)
        if got is None:
            raise fail(name, "no gradient reached the features: do not detach them or use integer tensors "
                             "on the path from the features to the output")
        expect_close(got, features.grad, name, "d(sum w * out) / d features", rtol=1e-7, atol=1e-9)


def check_vote(submission, names) -> None:
    with noting(submission, "ps_average_vote"):
        for name in names:
            x = submission.inputs("ps_average_vote", name)
            p, w = x["pooled"], x["weights"]
            want = p.mean((-2, -1)) if w is None else torch.einsum("rcij,ij->rc", p, w)
            expect_close(submission.output("ps_average_vote", name), want, name, "votes")


def check_reference(submission, unit: str, names, layout: str = "", hint: str = "") -> None:
    with noting(submission, unit):
        for name in names:
            got, want = submission.output(unit, name), submission.reference(unit, name)
            if isinstance(want, dict) and all(isinstance(v, list) for v in want.values()):
                expect_parameter_shapes(got, want, name)
            elif isinstance(want, (tuple, list)):
                expect_type(got, (tuple, list), name)
                if len(got) != len(want):
                    raise fail(name, f"expected {len(want)} outputs, got {len(got)}")
                for i, (g, w) in enumerate(zip(got, want)):
                    expect_rows(g, w, name, f"output {i}", layout, hint) if layout else \
                        expect_close(g, w, name, f"output {i}")
            else:
                expect_close(got, want, name)


def check_rfcn_forward(submission, names) -> None:
    with noting(submission, "rfcn", names_case="state_dict names, resnet18-lite"):
        for name in names:
            got, want = submission.output("rfcn", name), submission.reference("rfcn", name)
            expect_type(got, dict, name, "RFCN's forward outputs plus head outputs")
            missing = [k for k in want if k not in got]
            if missing:
                raise fail(name, f"forward must return a dict with keys {list(want)[:4]}; missing {missing}")
            for key, value in want.items():
                g = expect_tensor(got[key], name, key)
                if key.endswith("_maps") and g.shape[1] != value.shape[1]:
                    raise fail(name, f"{key} has {g.shape[1]} channels, expected {value.shape[1]} "
                                     f"(cls: 2 * k * k, box: 4 * k * k class-agnostic)")
                expect_close(g, value, name, key)


def expect_subset(got: torch.Tensor, allowed: torch.Tensor, case: str, what: str) -> None:
    bad = got & ~allowed
    if bad.any():
        raise GradingFailure(f"case '{case}': {what} ({int(bad.sum())} entries, first at "
                             f"{int(torch.nonzero(bad)[0])})")
