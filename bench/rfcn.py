"""Face R-FCN layers per image: the solutions' vectorised PS-RoI pooling against torchvision's C++
op and against a per-RoI Python loop (the like-for-like comparison on one machine; the course
report's 1.3-1.5 s per image was a CUDA pipeline on a P100 at 256 px), and the proposal /
anchor-target / proposal-target layers, all in one run, as ratios.

Inputs are one VGA image's worth, random but seeded: the score maps of a 640 x 480 image at
stride 16 (40 x 30 cells; k = 3 gives 18 class and 36 box channels, ``--k 7`` py-R-FCN's grid),
300 proposals, the RPN outputs for the lite config's anchors and 20 faces. The solutions'
notebooks are loaded with ``utils.notebook.load_notebook``.

    python -m bench.rfcn [--repeats 10] [--threads 2] [--k 3]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torchvision

from bench.timing import best_time
from detector.rfcn.config import get_config
from utils.notebook import load_notebook

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions" / "rfcn"
IMAGE = (480, 640)           # H, W
STRIDE = 16
PROPOSALS = 300
FACES = 20


def inputs(k: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    h, w = IMAGE[0] // STRIDE, IMAGE[1] // STRIDE
    xy = torch.rand(PROPOSALS, 2, generator=g) * torch.tensor([IMAGE[1], IMAGE[0]]) * 0.9
    rois = torch.cat([torch.zeros(PROPOSALS, 1), xy, xy + 8 + torch.rand(PROPOSALS, 2, generator=g) * 120], 1)
    side = torch.rand(FACES, 1, generator=g) * 60 + 8
    corner = torch.rand(FACES, 2, generator=g) * (torch.tensor([IMAGE[1], IMAGE[0]]) - 70)
    return {"cls_maps": torch.randn(1, 2 * k * k, h, w, generator=g),
            "box_maps": torch.randn(1, 4 * k * k, h, w, generator=g), "rois": rois,
            "faces": torch.cat([corner, corner + side], 1), "g": g}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nb1, nb2, nb3 = (load_notebook(SOLUTIONS / n) for n in
                     ("1_anchors_boxes.ipynb", "2_psroi_model.ipynb", "3_targets_losses.ipynb"))
    cfg = get_config("resnet18-lite")
    x = inputs(args.k)
    k, scale, rois = args.k, 1.0 / STRIDE, x["rois"]

    def vectorised():
        return nb2.ps_roi_pool(x["cls_maps"], rois, k, scale), nb2.ps_roi_pool(x["box_maps"], rois, k, scale)

    def library():
        return (torchvision.ops.ps_roi_pool(x["cls_maps"], rois, k, scale),
                torchvision.ops.ps_roi_pool(x["box_maps"], rois, k, scale))

    def per_roi_loop():
        return tuple(torch.cat([nb2.ps_roi_pool(maps, rois[r:r + 1], k, scale) for r in range(len(rois))])
                     for maps in (x["cls_maps"], x["box_maps"]))

    t_vec, out_vec = best_time(vectorised, args.repeats)
    t_lib, out_lib = best_time(library, args.repeats)
    t_loop, out_loop = best_time(per_roi_loop, max(1, args.repeats // 5))
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(out_vec, out_lib))
    same = same and all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(out_loop, out_lib))

    anchors = nb1.shift_anchors(nb1.generate_anchors(16, cfg["anchor_ratios"], cfg["anchor_scales"]),
                                IMAGE[0] // STRIDE, IMAGE[1] // STRIDE, STRIDE)
    g = x["g"]
    logits = torch.randn(1, len(anchors), 2, generator=g)
    deltas = torch.randn(1, len(anchors), 4, generator=g) * 0.2

    def proposals():
        return nb3.proposal_layer(logits, deltas, anchors, IMAGE, cfg["rpn_pre_nms_test"], cfg["rpn_post_nms_test"],
                                  cfg["rpn_nms_thresh"], cfg["rpn_min_size"])

    def anchor_targets():
        return nb3.anchor_target_layer(anchors, x["faces"], IMAGE, torch.Generator().manual_seed(0))

    def roi_targets():
        return nb3.proposal_target_layer(rois[:, 1:], x["faces"], torch.Generator().manual_seed(0))

    t_prop, (got_rois, _) = best_time(proposals, args.repeats)
    t_anchor, _ = best_time(anchor_targets, args.repeats)
    t_target, _ = best_time(roi_targets, args.repeats)
    t_nms, _ = best_time(lambda: nb1.nms_vectorised(got_rois[:, 1:], torch.rand(len(got_rois)), 0.3), args.repeats)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Face R-FCN layers, one {IMAGE[1]}x{IMAGE[0]} image, {PROPOSALS} RoIs, k = {k}, "
          f"{args.threads} threads, best of {args.repeats} (load average {load:.1f})")
    print(f"  ps_roi_pool cls + box, vectorised (solutions)  {1000 * t_vec:8.2f} ms")
    print(f"  ps_roi_pool cls + box, torchvision C++ op      {1000 * t_lib:8.2f} ms  "
          f"(vectorised / torchvision = {t_vec / t_lib:.1f}x)")
    print(f"  ps_roi_pool cls + box, per-RoI Python loop     {1000 * t_loop:8.2f} ms  "
          f"(loop / vectorised = {t_loop / t_vec:.1f}x)")
    print(f"  outputs agree (vectorised, loop, torchvision): {same}")
    print(f"  proposal_layer ({len(anchors)} anchors, pre {cfg['rpn_pre_nms_test']}, "
          f"post {cfg['rpn_post_nms_test']})  {1000 * t_prop:8.2f} ms")
    print(f"  anchor_target_layer ({FACES} faces)            {1000 * t_anchor:8.2f} ms")
    print(f"  proposal_target_layer                          {1000 * t_target:8.2f} ms")
    print(f"  nms_vectorised on the {len(got_rois)} proposals          {1000 * t_nms:8.2f} ms")
    print(f"  per image (proposals + pooling, vectorised)    {1000 * (t_prop + t_vec):8.2f} ms")


if __name__ == "__main__":
    main()
