"""utils.export: every detector at its lite config, untrained (``untrained_model``), exported to ONNX
and run by onnxruntime: raw outputs within 1e-4 of PyTorch at two input sizes other than the traced
one (the graph's height and width are dynamic), the kit's post-processed detections identical; R-FCN
exports up to its score maps, TinaFace's DCN becomes ONNX DeformConv; the CLI end to end and its
errors. Skipped without onnx / onnxruntime."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from data.augment import BGR_MEAN  # noqa: E402
from data.backgrounds import BackgroundBank  # noqa: E402
from data.synthetic import NOISE_MARGIN, make_picture  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.detectors import UserError, adapter  # noqa: E402
from utils.export import (EXPORTS, RAW_LIMIT, check, compare_detections, describe, export,  # noqa: E402
                          main, separating_threshold, session, spec, untrained_model)
from utils.inference import Detections  # noqa: E402

MODELS = ("retinaface", "dsfd", "tinaface", "rfcn")
# (H, W), both unlike the traced size (utils.export.ExportSpec.sample_size) and multiples of DSFD's 128
SIZES = ((128, 256), (384, 256))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    """Two embedded validation pictures, resized to SIZES (uint8 BGR)."""
    bank = BackgroundBank(noise_size=256 + NOISE_MARGIN)
    out = []
    for index, (h, w) in enumerate(SIZES):
        jpeg = make_picture(bank, 0, "val", index, 256)[2]
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        out.append(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
    return out


def as_input(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float() - torch.tensor(BGR_MEAN)[:, None, None]
    return x[None]


@pytest.mark.parametrize("model", MODELS)
def test_export_matches_pytorch(model, pictures, tmp_path):
    cfg = adapter(model).LITE
    net, _ = untrained_model(model, cfg, image=pictures[1])
    path = export(model, net, tmp_path / f"{model}.onnx")
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert [o.name for o in graph.output] == list(EXPORTS[model].outputs)
    ops = {node.op_type for node in graph.node}
    assert ("DeformConv" in ops) == (model == "tinaface")     # the lite TinaFace has DCN in layer3/4

    # raw outputs at two sizes: the graph's shapes follow the input
    sess = session(path, threads=1, spin=False)
    shapes = []
    for image in pictures:
        x = as_input(image)
        with torch.no_grad():
            expected = net(x)
        if isinstance(expected, dict):
            expected = tuple(expected[name] for name in EXPORTS[model].outputs)
        got = sess.run(None, {"images": x.numpy()})
        assert [a.shape for a in got] == [tuple(t.shape) for t in expected]
        diff = max(float(np.abs(a - t.numpy()).max()) for a, t in zip(got, expected))
        assert diff <= RAW_LIMIT, f"{model} at {image.shape[:2]}: largest difference {diff:.3g}"
        shapes.append([a.shape for a in got])
    assert shapes[0] != shapes[1]

    # the kit's detector with the graph in onnxruntime (the rest in PyTorch): the same detections
    conf = separating_threshold(model, net, cfg, pictures[1], count=20)
    result = check(model, net, path, cfg, pictures, conf_thresh=conf)
    assert result.raw_difference <= RAW_LIMIT
    assert result.detections > 0
    assert result.identical_images == len(pictures), result
    assert result.passed


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(UserError, match="unknown model 'yolo'; expected one of retinaface, dsfd"):
        spec("yolo")
    with pytest.raises(UserError, match="unknown model"):
        export("yolo", torch.nn.Identity(), tmp_path / "x.onnx")
    with pytest.raises(SystemExit) as exc:
        main(["--model", "yolo", "--random-weights", "--out", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
    assert "invalid choice: 'yolo'" in capsys.readouterr().err


def test_weights_or_random_weights_required(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "retinaface", "--out", str(tmp_path / "x.onnx")])
    assert "--weights" in capsys.readouterr().err
    assert run(main, ["--model", "retinaface", "--weights", str(tmp_path / "none.pth"),
                      "--out", str(tmp_path / "x.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_check(tmp_path, capsys, monkeypatch):
    """retinaface end to end: export, then --check on the crowd photo and one validation picture."""
    out = tmp_path / "retinaface.onnx"
    assert run(main, ["--model", "retinaface", "--random-weights", "--out", str(out), "--check",
                      "--images", "1", "--data", str(tmp_path / "no-data")]) == 0
    text = capsys.readouterr().out
    assert out.is_file()
    assert "limit 0.0001): ok" in text
    assert "identical on 2/2 images" in text
    assert "1 embedded validation pictures generated in memory" in text


def test_rfcn_says_what_runs_outside():
    text = describe("rfcn")
    assert "cls_maps, box_maps" in text and "PS-RoI pooling" in text and "proposal layer" in text
    assert "DeformConv" in describe("tinaface")


def test_compare_detections_allows_only_near_tie_reordering():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    a = Detections(boxes, np.array([0.5, 0.5], np.float32), None)
    swapped = Detections(boxes[::-1].copy(), np.array([0.5, 0.5], np.float32), None)
    assert compare_detections(a, swapped)[0]
    far = Detections(boxes[::-1].copy(), np.array([0.9, 0.5], np.float32), None)
    assert not compare_detections(Detections(boxes, np.array([0.9, 0.5], np.float32), None), far)[0]
    assert not compare_detections(a, Detections(boxes[:1], np.array([0.5], np.float32), None))[0]


class _Deformable(torch.nn.Module):
    """torchvision's deform_conv2d with every option the conversion maps: stride, padding, dilation,
    weight groups, offset groups, a DCNv2 mask and a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = torch.nn.Conv2d(8, 2 * 2 * 9, 3, stride=2, padding=2, dilation=2)
        self.mask = torch.nn.Conv2d(8, 2 * 9, 3, stride=2, padding=2, dilation=2)
        self.weight = torch.nn.Parameter(torch.randn(6, 4, 3, 3) * 0.1)
        self.bias = torch.nn.Parameter(torch.randn(6))
        torch.nn.init.normal_(self.offset.weight, std=0.3)

    def forward(self, x):
        import torchvision

        return torchvision.ops.deform_conv2d(x, self.offset(x), self.weight, self.bias, stride=2, padding=2,
                                             dilation=2, mask=torch.sigmoid(self.mask(x)))


@pytest.mark.filterwarnings("ignore")   # the TorchScript exporter's deprecation and tracer notices
def test_deform_conv_becomes_onnx_deformconv(tmp_path):
    from utils.export import OPSET, register_deform_conv

    torch.manual_seed(0)
    layer = _Deformable().eval()
    register_deform_conv()
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(layer, (torch.randn(1, 8, 16, 20),), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["x"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    assert "DeformConv" in {node.op_type for node in onnx.load(str(path)).graph.node}
    sess = session(path, threads=1, spin=False)
    for shape in ((1, 8, 11, 13), (2, 8, 24, 9)):
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = layer(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5


def test_check_fails_on_a_graph_of_other_weights(pictures, tmp_path, monkeypatch, capsys):
    """A graph that does not compute the PyTorch model's outputs fails the check; the CLI exits 1."""
    import utils.export as export_module

    net, _ = untrained_model("retinaface", "mobilenet0.25", image=pictures[1])
    path = export("retinaface", net, tmp_path / "retinaface.onnx")
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]   # a head's output conv
        last.bias.add_(0.01)                          # the PyTorch model moves on; the file does not
    result = check("retinaface", net, path, "mobilenet0.25", pictures[:1],
                   conf_thresh=separating_threshold("retinaface", net, "mobilenet0.25", pictures[0], count=20))
    assert result.raw_difference > RAW_LIMIT and not result.passed

    failed = export_module.CheckResult(images=1, forward_passes=1, raw_difference=1.0, identical_images=0,
                                       detections=3, box_difference=5.0, score_difference=0.1)
    monkeypatch.setattr(export_module, "check", lambda *args, **kwargs: failed)
    assert run(main, ["--model", "retinaface", "--random-weights", "--out", str(tmp_path / "x.onnx"),
                      "--check", "--images", "0"]) == 1
    out = capsys.readouterr().out
    assert "(limit 0.0001): FAILED" in out and "identical on 0/1 images" in out
