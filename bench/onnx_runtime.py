"""PyTorch vs onnxruntime on a VGA photo: milliseconds per 640x480 image for each detector's lite config,
the exported part alone (``utils.export``) and the whole detection (the kit's detector: the exported part
run by PyTorch or by onnxruntime, the rest in PyTorch), as speed-ups against PyTorch in the same process.

The photo is ``../shared/data/photos/crowd.jpg`` resized to 640x480 (scikit-image's astronaut without it,
as ``bench.inference``). Weights: the demo's checkpoint (``outputs/demo[-<model>]/<model>_<lite>_demo.pt``)
where ``make demo`` made one, else the public MobileNet-0.25 checkpoint for RetinaFace, else
``utils.export.untrained_model``; an untrained model's detection runs with the threshold of
``utils.export.separating_threshold`` (its 50 best detections on the photo), so that post-processing
has a trained model's amount of work rather than tens of thousands of candidates. DSFD's lite detector
runs two passes (full and half size, padded to multiples of 128); R-FCN's forward is the exported part
(backbone, RPN, score maps) and its detection adds the proposal layer, PS-RoI pooling and NMS in PyTorch.
Both runtimes get ``--threads`` threads; the rounds interleave them (``bench.timing.best_times``) so
that other load on the machine hits both alike. On a busy machine ``OMP_WAIT_POLICY=PASSIVE`` gives
steadier numbers (as for ``bench.inference``); onnxruntime's threads then stop spinning too.

    python -m bench.onnx_runtime [--model retinaface ...] [--repeats 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import onnxruntime
import torch

from bench.inference import PUBLIC_WEIGHTS, vga_photo
from bench.timing import best_times
from data.augment import BGR_MEAN
from utils.detectors import adapter, load_detector, load_model
from utils.export import (OnnxModel, RANDOM_DETECTIONS, export, separating_threshold, session,
                          untrained_model)

MODELS = ("retinaface", "dsfd", "tinaface", "rfcn")
REPO = Path(__file__).resolve().parents[1]


def demo_checkpoint(model: str) -> Path:
    folder = REPO / "outputs" / ("demo" if model == "retinaface" else f"demo-{model}")
    return folder / f"{model}_{adapter(model).LITE}_demo.pt"


def build(model: str, image) -> tuple[torch.nn.Module, str, dict]:
    """(model, where its weights came from, detector options)."""
    cfg = adapter(model).LITE
    for path, label in ((demo_checkpoint(model), "demo checkpoint"),
                        (PUBLIC_WEIGHTS if model == "retinaface" else None, "public checkpoint")):
        if path is not None and path.is_file():
            return load_model(model, cfg, weights=path), label, {}
    net, _ = untrained_model(model, cfg, image=image)
    conf = separating_threshold(model, net, cfg, image, RANDOM_DETECTIONS)
    return net, "untrained", {"conf_thresh": conf}


def model_input(model: str, detector, image) -> torch.Tensor:
    """The exported part's input for ``image`` as the model's detector makes it (DSFD: padded)."""
    if hasattr(detector, "prepare"):
        return detector.prepare([image])
    x = torch.from_numpy(image).permute(2, 0, 1).float() - torch.tensor(BGR_MEAN)[:, None, None]
    return x[None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    image, source = vga_photo()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"PyTorch {torch.__version__} vs onnxruntime {onnxruntime.__version__} (CPU), {args.threads} threads "
          f"each, best of {args.repeats} interleaved rounds; image: {source} resized to 640x480; "
          f"load average {load:.1f} on {os.cpu_count()} cores" + ("; idle threads passive" if passive else ""))
    print(f"{'model':<11}{'weights':<18}{'input':>9}  {'forward ms: PyTorch':>19} {'onnxrt':>7} {'speed-up':>8}"
          f"  {'detect ms: PyTorch':>18} {'onnxrt':>7} {'speed-up':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model:
            cfg = adapter(model).LITE
            net, weights, options = build(model, image)
            path = export(model, net, Path(tmp) / f"{model}.onnx")
            onnx_net = OnnxModel(model, net, session(path, args.threads, spin=not passive)).eval()
            torch_detector = load_detector(model, net, cfg, **options)
            onnx_detector = load_detector(model, onnx_net, cfg, **options)
            x = model_input(model, torch_detector, image)

            def torch_forward():
                with torch.inference_mode():
                    return net(x)

            def onnx_forward():
                return onnx_net(x)

            def torch_detect():
                with torch.inference_mode():
                    return torch_detector.detect([image])

            def onnx_detect():
                with torch.inference_mode():
                    return onnx_detector.detect([image])

            best = best_times({"tf": torch_forward, "of": onnx_forward, "td": torch_detect, "od": onnx_detect},
                              args.repeats)
            ms = {k: 1000 * v for k, v in best.items()}
            size = f"{x.shape[-2]}x{x.shape[-1]}"
            print(f"{model:<11}{weights:<18}{size:>9}  {ms['tf']:19.1f} {ms['of']:7.1f} {ms['tf'] / ms['of']:7.2f}x"
                  f"  {ms['td']:18.1f} {ms['od']:7.1f} {ms['td'] / ms['od']:7.2f}x")


if __name__ == "__main__":
    main()
