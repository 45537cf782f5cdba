"""Export a homework's detector to ONNX, and check the exported graph against PyTorch with onnxruntime.

    python -m utils.export --model retinaface [--cfg mobilenet0.25] --weights W.pth --out F.onnx [--check]
    python -m utils.export --model tinaface --random-weights --out /tmp/tina.onnx --check   (untrained: testing)
        [--impl solutions|DIR] [--data outputs/data] [--images 20] [--conf C] [--threads N] [--opset 19]
        [--debug]

The graph's input is ``images`` [B, 3, H, W] float32: BGR pixels minus the mean colour (104, 117, 123),
as ``utils.inference.Detector.prepare`` makes them; batch, height and width are dynamic (one file serves
every image size). What the graph holds, per detector (``EXPORTS``):

* retinaface: the whole network -> ``loc`` [B, P, 4], ``conf`` [B, P, 2], ``landm`` [B, P, 10].
* dsfd: the whole network as it runs at test time (the second shot, FEM included) -> ``loc`` [B, P, 4],
  ``conf`` [B, P, 2]. H and W must be multiples of 128 (the kit's detector pads every batch so).
* tinaface: the whole network -> ``bbox_pred`` [B, P, 4], ``cls`` [B, P, 1], ``iou`` [B, P, 1]. Its DCNv1
  layers (``torchvision.ops.deform_conv2d``, which PyTorch's exporter has no conversion for) become the
  standard ONNX ``DeformConv`` operator (opset 19), by a conversion registered here; onnxruntime's CPU
  provider runs it.
* rfcn: backbone, RPN and the position-sensitive score maps -> ``rpn_logits`` [B, P, 2], ``rpn_deltas``
  [B, P, 4], ``cls_maps`` [B, 2k², h, w], ``box_maps`` [B, 4k², h, w]. Runs OUTSIDE the graph, in
  PyTorch: the anchors, the proposal layer (decoding, clipping, top-k, NMS), the PS-RoI pooling and
  position-sensitive voting of the R-FCN head (``model.head``: ONNX has no PS-RoI pooling operator),
  the box decoding, the score threshold and the final NMS.

For every detector the kit's post-processing (priors, decoding, score threshold, top-k, NMS:
``utils.inference.Detector`` or the adapter's own detector) runs outside the graph, in PyTorch, as it
does for the PyTorch model.

``--check`` runs the kit's detector twice on the crowd photo (``../shared/data/photos/crowd.jpg``, as
``bench.inference``; scikit-image's astronaut when it is absent) and ``--images`` validation images
(the ``--data`` folder's val split, else the same pictures generated in memory by ``data.synthetic``),
each image at its own size: once with the PyTorch model, once with the exported part run by onnxruntime
and the rest in PyTorch. It prints the largest difference of the raw outputs of the exported part over
every forward pass (limit ``RAW_LIMIT`` = 1e-4) and whether the detections after the kit's
post-processing are identical (same count; each detection pairs with one of the other run within
``DETECTION_PX`` pixels (boxes, landmarks) and ``SCORE_ATOL`` (score), so the order can differ only
among scores that close: ``compare_detections``). It exits 1 when either fails, 2 on a user error.

Without ``--weights``, ``--random-weights`` must be given (for testing the export): the model's seeded
initialisation, with seeded noise added to every parameter that is constant at initialisation
(``randomise_constants``: zero DCN offset convolutions, zero-initialised residual norms, zero box
heads...), which would otherwise hide most of the graph from the check; BatchNorm scaled on the crowd
photo where the raw outputs reach hundreds (R-FCN's ResNet: ``untrained_model``). Its check keeps the
candidates above the 50th best detection on the crowd photo (``separating_threshold``; ``--conf`` sets
another): an untrained model scores nearly every prior alike, and rounding breaks near-ties either way.

The exporter is PyTorch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): it needs
no package beyond ``onnx`` and a custom operator's conversion is one registered function; the newer
``dynamo=True`` exporter (PyTorch's default since 2.9) needs ``onnxscript`` and a translation table for
``deform_conv2d``. PyTorch marks the TorchScript exporter deprecated: a release that removes it will
need that switch.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from utils.cli import run
from utils.detectors import ADAPTERS, UserError, adapter, config as model_config, load_detector, load_model

OPSET = 19                     # the first opset with DeformConv (TinaFace's DCN)
RAW_LIMIT = 1e-4               # largest |ONNX - PyTorch| of a raw output that --check accepts
DETECTION_PX = 1e-2            # boxes and landmarks of "identical" detections agree within this (pixels)
SCORE_ATOL = 1e-5              # ... and their scores within this
CHECK_IMAGES = 20              # validation images of --check (beside the crowd photo)
SEED = 0                       # the random weights of --random-weights
ZERO_WEIGHT_STD = 0.01         # randomise_constants: noise of constant weights (as the heads' init)
OFFSET_STD = 0.02              # ... of the DCN offset convs' weights
OFFSET_BIAS_STD = 1.0          # ... of their biases (pixels)
VECTOR_STD = 0.1               # ... of constant norm weights and biases
CALIBRATE_ABOVE = 10.0         # untrained_model: raw outputs beyond this get BatchNorm scaled
RANDOM_DETECTIONS = 50         # --check of --random-weights: candidates above the 50th best detection
INPUT_NAME = "images"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CROWD = SHARED_DATA / "photos" / "crowd.jpg"
DEFAULT_DATA = Path("outputs/data")


@dataclass(frozen=True)
class ExportSpec:
    """What of a detector goes into the graph: output names (in order; a model returning a dict is
    read by these keys), the tracing input size, and what runs outside, in words."""

    outputs: tuple[str, ...]
    map_outputs: tuple[str, ...] = ()   # outputs shaped [B, C, h, w] (the others [B, P, C])
    sample_size: tuple[int, int] = (256, 384)
    dict_output: bool = False           # the model returns a dict (and has a PyTorch .head)
    outside: str = ""

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        for name in self.outputs:
            axes[name] = ({0: "batch", 2: f"{name}_h", 3: f"{name}_w"} if name in self.map_outputs
                          else {0: "batch", 1: "priors"})
        return axes


POST = "priors/anchors, decoding, score threshold, top-k and NMS (the kit's post-processing)"
EXPORTS: dict[str, ExportSpec] = {
    "retinaface": ExportSpec(("loc", "conf", "landm"), outside=POST),
    "dsfd": ExportSpec(("loc", "conf"), outside=POST + "; the padding of inputs to multiples of 128 "
                       "and the multi-scale passes of the lite configs"),
    "tinaface": ExportSpec(("bbox_pred", "cls", "iou"),
                           outside=POST + " (DCN layers are inside, as ONNX DeformConv)"),
    "rfcn": ExportSpec(("rpn_logits", "rpn_deltas", "cls_maps", "box_maps"), ("cls_maps", "box_maps"),
                       dict_output=True,
                       outside="anchors; the proposal layer (decoding, clipping, top-k, NMS); the R-FCN "
                               "head's PS-RoI pooling and position-sensitive voting (model.head: no ONNX "
                               "operator); box decoding, clipping, score threshold and NMS"),
}


def spec(model: str) -> ExportSpec:
    adapter(model)   # the registry's clear error for an unknown name
    if model not in EXPORTS:
        raise UserError(f"no ONNX export is defined for {model!r}; defined: {', '.join(EXPORTS)}")
    return EXPORTS[model]


def describe(model: str) -> str:
    """One paragraph: what the graph of ``model`` holds and what runs outside it, in PyTorch."""
    s = spec(model)
    return (f"{model}: the ONNX graph maps {INPUT_NAME} [B, 3, H, W] (BGR minus the mean; B, H, W dynamic) "
            f"to {', '.join(s.outputs)}; outside the graph, in PyTorch: {s.outside}")


# -- TinaFace's DCN: torchvision::deform_conv2d -> ONNX DeformConv (opset 19) -------------------------
_registered = False


def register_deform_conv() -> None:
    """Teach the TorchScript exporter ``torchvision::deform_conv2d`` (PyTorch and torchvision ship no
    conversion for it): the standard ``DeformConv`` operator of opset 19, whose offset layout
    ((dy, dx) per kernel tap, taps row-major, offset groups block-major) and zero padding outside the
    input are torchvision's. A DCNv2 mask becomes DeformConv's optional ``mask`` input."""
    global _registered
    if _registered:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
    def deform_conv2d(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                      dil_h, dil_w, n_weight_grps, n_offset_grps, use_mask):
        inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op("DeformConv", *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
                    dilations_i=[dil_h, dil_w], group_i=n_weight_grps, offset_group_i=n_offset_grps)

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d, OPSET)
    _registered = True


def randomise_constants(model: torch.nn.Module, seed: int = SEED) -> int:
    """Add seeded noise to every parameter whose elements are all equal, in place; returns how many.

    A freshly initialised detector has many: zero DCN offset convolutions (every deformable
    convolution is then a plain one), zero-initialised residual norms (the block's branch, DCN
    included, then adds nothing), zero box and IoU heads, norms of weight one, constant biases. An
    export check with them would not see most of the graph. Weights (2+ dimensions) get normal noise
    of std ``ZERO_WEIGHT_STD`` (DCN offset convs ``OFFSET_STD``: offsets of about a pixel), vectors
    (norm weights, biases) of std ``VECTOR_STD`` (more for the offset convs' biases)."""
    gen = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.numel() == 0 or not bool((param == param.reshape(-1)[0]).all()):
                continue
            offset = ".conv_offset." in f".{name}"
            if param.ndim >= 2:
                std = OFFSET_STD if offset else ZERO_WEIGHT_STD
            else:
                std = OFFSET_BIAS_STD if offset else VECTOR_STD
            param.add_(torch.randn(param.shape, generator=gen) * std)
            changed += 1
    return changed


def calibrate_batchnorm(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """Scale every BatchNorm layer of an untrained ``model`` to its input on ``batch``, in place:
    running mean 0 and running variance the mean square of each channel, set layer by layer during
    one forward pass (each layer sees its predecessors' new statistics); returns how many layers.

    An untrained ResNet keeps running statistics (0, 1) that normalise nothing: R-FCN's score maps
    then reach hundreds, where float32 rounding alone exceeds ``RAW_LIMIT``. Measured means are not
    subtracted: a channel of large mean and small spread would then amplify rounding instead."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def measure(module, inputs):
        x = inputs[0]
        dims = [d for d in range(x.ndim) if d != 1]
        module.running_mean.zero_()
        module.running_var.copy_(x.detach().float().pow(2).mean(dim=dims) + module.eps)

    was_training = model.training
    hooks = [m.register_forward_pre_hook(measure) for m in norms]
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return len(norms)


def untrained_model(model: str, cfg: str | dict, impl: str | Path = "solutions", image: np.ndarray | None = None,
                    seed: int = SEED) -> tuple[torch.nn.Module, str]:
    """The model of ``--random-weights``: seeded initialisation and ``randomise_constants``; where its
    raw outputs on ``image`` (uint8 BGR; default the crowd photo) exceed ``CALIBRATE_ABOVE`` (R-FCN's
    ResNet), ``calibrate_batchnorm`` on that image. Returns (model in eval mode, what was done in
    words). Calibrating every model would not do: it puts RetinaFace's MobileNet into a regime where
    float32 rounding of PyTorch itself (against float64) grows to ~5e-5."""
    from data.augment import BGR_MEAN

    net = load_model(model, cfg, impl, seed=seed)
    changed = randomise_constants(net, seed)
    if image is None:
        image = crowd_photo()[0]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    x = x - torch.tensor(BGR_MEAN, dtype=torch.float32)[:, None, None]
    divisor = 128    # DSFD's largest stride; every model takes such a size
    h, w = max(divisor, x.shape[1] - x.shape[1] % divisor), max(divisor, x.shape[2] - x.shape[2] % divisor)
    batch = torch.nn.functional.pad(x, (0, max(0, w - x.shape[2]), 0, max(0, h - x.shape[1])))[None, :, :h, :w]
    what = f"random weights (seed {seed}; noise added to {changed} constant parameters"
    net.eval()
    with torch.no_grad():
        out = net(batch)
    largest = max(float(t.abs().max()) for t in (out.values() if isinstance(out, dict) else out))
    if largest > CALIBRATE_ABOVE:
        norms = calibrate_batchnorm(net, batch)
        what += (f"; outputs up to {largest:.0f}: {norms} BatchNorm layers scaled to their inputs on "
                 f"one image")
    return net.eval(), what + ")"


class _ExportView(torch.nn.Module):
    """The exported part as a tuple of tensors in ``spec.outputs`` order."""

    def __init__(self, net: torch.nn.Module, s: ExportSpec) -> None:
        super().__init__()
        self.net, self.spec = net, s

    def forward(self, images: torch.Tensor):
        out = self.net(images)
        if self.spec.dict_output:
            return tuple(out[name] for name in self.spec.outputs)
        return tuple(out)


def export(model: str, net: torch.nn.Module, out: str | Path, opset: int = OPSET) -> Path:
    """Write the exported part of ``net`` (homework ``model``, eval mode) to ``out`` (.onnx); checked
    by ``onnx.checker``. Returns the path."""
    import onnx

    s = spec(model)
    register_deform_conv()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    view = _ExportView(net, s).eval()
    sample = torch.zeros(1, 3, *s.sample_size)
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and the tracer's shape warnings (the two
        # input sizes of tests/test_export.py prove the dynamic shapes)
        warnings.simplefilter("ignore")
        torch.onnx.export(view, (sample,), str(out), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=list(s.outputs),
                          dynamic_axes=s.dynamic_axes, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(out)))
    return out


def session(path: str | Path, threads: int | None = None, spin: bool = True):
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads; None: onnxruntime's).
    ``spin=False`` keeps idle worker threads from spinning (kinder to a busy machine, slower)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(torch.nn.Module):
    """The exported part run by onnxruntime, shaped like the PyTorch model's output (a tuple, or
    R-FCN's dict), so that the kit's detectors take it in place of the model; ``head`` (R-FCN) runs
    in PyTorch. With ``record``, every (input, outputs) pair is kept in ``.calls``."""

    def __init__(self, model: str, net: torch.nn.Module, sess, record: bool = False) -> None:
        super().__init__()
        self.spec, self.net, self.session = spec(model), net, sess
        self.record, self.calls = record, []

    def forward(self, images: torch.Tensor):
        arrays = self.session.run(list(self.spec.outputs),
                                  {INPUT_NAME: images.detach().cpu().float().contiguous().numpy()})
        outputs = tuple(torch.from_numpy(a) for a in arrays)
        if self.record:
            self.calls.append((images.detach().clone(), outputs))
        return dict(zip(self.spec.outputs, outputs)) if self.spec.dict_output else outputs

    def head(self, outputs: dict, rois: torch.Tensor):
        return self.net.head(outputs, rois)


class _TorchRecorder(torch.nn.Module):
    """The PyTorch model, keeping every (input, outputs) pair in ``.calls`` (outputs in spec order)."""

    def __init__(self, model: str, net: torch.nn.Module) -> None:
        super().__init__()
        self.spec, self.net, self.calls = spec(model), net, []

    def forward(self, images: torch.Tensor):
        out = self.net(images)
        flat = tuple(out[n] for n in self.spec.outputs) if self.spec.dict_output else tuple(out)
        self.calls.append((images.detach().clone(), tuple(t.detach().clone() for t in flat)))
        return out

    def head(self, outputs: dict, rois: torch.Tensor):
        return self.net.head(outputs, rois)


def max_difference(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]) -> float:
    """Largest |a - b| over paired outputs (inf when a shape differs)."""
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        if tuple(a.shape) != tuple(b.shape):
            return float("inf")
        if a.numel():
            worst = max(worst, float((a.float() - b.float()).abs().max()))
    return worst


def compare_detections(a, b) -> tuple[bool, float, float]:
    """(identical, largest box/landmark difference in pixels, largest score difference) of two
    ``Detections`` of one image. Identical: the same count, and each detection of ``a`` pairs with its
    own of ``b`` within ``DETECTION_PX`` pixels (boxes, landmarks) and ``SCORE_ATOL`` (score); both are
    sorted by score, so their orders can differ only among scores that close (ties that rounding
    breaks either way)."""
    if len(a) != len(b) or (a.landmarks is None) != (b.landmarks is None):
        return False, float("inf"), float("inf")
    if len(a) == 0:
        return True, 0.0, 0.0
    first = np.column_stack([a.boxes] + ([a.landmarks] if a.landmarks is not None else []))
    second = np.column_stack([b.boxes] + ([b.landmarks] if b.landmarks is not None else []))
    px, score = float(np.abs(first - second).max()), float(np.abs(a.scores - b.scores).max())
    if px <= DETECTION_PX and score <= SCORE_ATOL:
        return True, px, score
    # another order: pair greedily, best first, among the detections within tolerance
    close = ((np.abs(first[:, None] - second[None]).max(-1) <= DETECTION_PX)
             & (np.abs(a.scores[:, None] - b.scores[None]) <= SCORE_ATOL))
    used = np.zeros(len(b), bool)
    worst_px, worst_score = 0.0, 0.0
    for i in range(len(a)):
        free = np.flatnonzero(close[i] & ~used)
        if len(free) == 0:
            return False, px, score
        j = free[0]
        used[j] = True
        worst_px = max(worst_px, float(np.abs(first[i] - second[j]).max()))
        worst_score = max(worst_score, abs(float(a.scores[i] - b.scores[j])))
    return True, worst_px, worst_score


@dataclass
class CheckResult:
    images: int
    forward_passes: int
    raw_difference: float          # largest |ONNX - PyTorch| over every raw output of every pass
    identical_images: int          # images whose detections are identical
    detections: int                # detections of the PyTorch detector, all images
    box_difference: float          # pixels, over the images with the same count
    score_difference: float

    @property
    def passed(self) -> bool:
        return self.raw_difference <= RAW_LIMIT and self.identical_images == self.images


def check(model: str, net: torch.nn.Module, onnx_path: str | Path, cfg: str | dict,
          images: Sequence[np.ndarray], impl: str | Path = "solutions", threads: int | None = None,
          **options: Any) -> CheckResult:
    """Run the kit's detector of ``model`` on every image (each alone, at its own size) with the
    PyTorch model and with the ONNX graph in onnxruntime (the rest in PyTorch); compare. onnxruntime
    gets ``threads`` threads (None: as many as PyTorch has)."""
    torch_model = _TorchRecorder(model, net).eval()
    sess = session(onnx_path, threads or torch.get_num_threads(), spin=False)
    onnx_model = OnnxModel(model, net, sess, record=True).eval()
    torch_detector = load_detector(model, torch_model, cfg, impl, **options)
    onnx_detector = load_detector(model, onnx_model, cfg, impl, **options)
    identical, count, box_diff, score_diff = 0, 0, 0.0, 0.0
    for image in images:
        with torch.inference_mode():
            expected, got = torch_detector.detect([image])[0], onnx_detector.detect([image])[0]
        same, px, score = compare_detections(expected, got)
        identical += same
        count += len(expected)
        if np.isfinite(px):
            box_diff, score_diff = max(box_diff, px), max(score_diff, score)
    if len(torch_model.calls) != len(onnx_model.calls):
        raise RuntimeError("the two detectors ran different numbers of forward passes")
    raw = 0.0
    for (x_t, out_t), (x_o, out_o) in zip(torch_model.calls, onnx_model.calls):
        if not torch.equal(x_t, x_o):
            raise RuntimeError("the two detectors prepared different inputs")
        raw = max(raw, max_difference(out_t, out_o))
    return CheckResult(len(images), len(onnx_model.calls), raw, identical, count, box_diff, score_diff)


def separating_threshold(model: str, net: torch.nn.Module, cfg: str | dict, image: np.ndarray,
                         count: int = RANDOM_DETECTIONS, impl: str | Path = "solutions") -> float:
    """A candidate threshold for checking an untrained ``net``: halfway between the scores of the
    ``count``-th and the next best detection of its PyTorch detector on ``image`` (at threshold 0).
    An untrained model scores nearly every prior alike (RetinaFace: 26240 priors of the crowd photo
    within 0.46-0.48), and float32 rounding breaks such near-ties either way; a few dozen candidates
    are far enough apart."""
    found = load_detector(model, net, cfg, impl, conf_thresh=0.0).detect([image])[0]
    scores = np.sort(found.scores)[::-1]
    if len(scores) <= count:
        return 0.0
    return float(scores[count - 1] + scores[count]) / 2


# -- the images of --check ---------------------------------------------------------------------------
def crowd_photo() -> tuple[np.ndarray, str]:
    """The kit's crowd photo (uint8 BGR) and where it came from; scikit-image's astronaut without it."""
    import cv2
    from skimage import data as skdata
    from utils.detect import read_image

    if CROWD.is_file():
        return read_image(CROWD), str(CROWD)
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), "scikit-image's astronaut (no crowd photo)"


def validation_images(count: int, data_root: str | Path | None = DEFAULT_DATA) -> tuple[list[np.ndarray], str]:
    """The first ``count`` images of ``data_root``'s val split, or (without one) the same pictures of
    the embedded set generated in memory by ``data.synthetic`` (seed 0, long side 640)."""
    from utils.detect import read_image

    if count <= 0:
        return [], "no validation images"
    root = Path(data_root) if data_root is not None else None
    if root is not None and (root / "val" / "label.txt").is_file():
        from data.widerface import WiderFaceDataset

        dataset = WiderFaceDataset(root, "val")
        n = min(count, len(dataset))
        return [read_image(dataset.image_path(i)) for i in range(n)], f"{n} images of {root / 'val'}"
    import cv2
    from data.backgrounds import BackgroundBank
    from data.synthetic import NOISE_MARGIN, make_picture

    long_side = 640
    bank = BackgroundBank(noise_size=long_side + NOISE_MARGIN)
    pictures = []
    for index in range(count):
        jpeg = make_picture(bank, 0, "val", index, long_side)[2]
        pictures.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    return pictures, f"{count} embedded validation pictures generated in memory (no {root}/val)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(ADAPTERS), help="which homework's detector")
    parser.add_argument("--cfg", help="config name (default: the model's CPU lite config)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", help="checkpoint (.pth/.pt) to export")
    weights.add_argument("--random-weights", action="store_true",
                         help=f"export an untrained model (seed {SEED}, constant parameters perturbed): for testing")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime with PyTorch on the crowd photo and validation images")
    parser.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset root whose val split --check reads")
    parser.add_argument("--images", type=int, default=CHECK_IMAGES, help="validation images of --check")
    parser.add_argument("--conf", type=float,
                        help="candidate score threshold of --check (default: the detector's own; with "
                             f"--random-weights: between the {RANDOM_DETECTIONS}th and next best "
                             "detection on the crowd photo)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}: the first with DeformConv)")
    parser.add_argument("--threads", type=int, help="PyTorch and onnxruntime threads (default: PyTorch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    s = spec(args.model)
    cfg = args.cfg or adapter(args.model).LITE
    model_config(args.model, cfg)   # an unknown config fails before anything is built
    if args.random_weights:
        net, what = untrained_model(args.model, cfg, args.impl)
    else:
        net, what = load_model(args.model, cfg, args.impl, args.weights, seed=SEED), args.weights
    start = time.perf_counter()
    path = export(args.model, net, args.out, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {args.opset}, "
          f"{time.perf_counter() - start:.1f} s): {args.model} {cfg}, {what}")
    print(describe(args.model))
    if not args.check:
        return 0

    crowd, crowd_source = crowd_photo()
    val, val_source = validation_images(args.images, args.data)
    print(f"checking on the crowd photo ({crowd_source}, {crowd.shape[1]}x{crowd.shape[0]}) and {val_source}, "
          f"each image at its own size")
    options = {}
    if args.conf is not None:
        options["conf_thresh"] = args.conf
    elif args.random_weights:
        options["conf_thresh"] = separating_threshold(args.model, net, cfg, crowd, RANDOM_DETECTIONS, args.impl)
        print(f"untrained model: candidates above {options['conf_thresh']:.6g} (between its "
              f"{RANDOM_DETECTIONS}th and next best detection on the crowd photo; --conf sets another)")
    start = time.perf_counter()
    result = check(args.model, net, path, cfg, [crowd, *val], args.impl, **options)
    print(f"raw outputs ({', '.join(s.outputs)}), {result.forward_passes} forward passes: largest "
          f"|onnxruntime - PyTorch| = {result.raw_difference:.3g} (limit {RAW_LIMIT:g}): "
          f"{'ok' if result.raw_difference <= RAW_LIMIT else 'FAILED'}")
    print(f"detections after the kit's post-processing: identical on {result.identical_images}/"
          f"{result.images} images ({result.detections} detections; largest difference "
          f"{result.box_difference:.3g} px, score {result.score_difference:.3g}): "
          f"{'ok' if result.identical_images == result.images else 'FAILED'} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(run(main))
