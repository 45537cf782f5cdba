"""Graded units of the TinaFace homework, Part 1 (``1_model.ipynb``): deformable convolution, the
GroupNorm ResNet, FPN (P2..P7), Inception, the head and BiFPN. Module units return their state_dict
summary and their outputs with name-seeded weights, computed in float64 (``autograder.modules``) and
returned in float32 to keep the reference file small."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder.modules import MODEL_DTYPE, as_module, deterministic_weights, parameter_shapes
from autograder.tinaface.inputs import level_features, oracle_checked, positive_fusion_weights, randn
from autograder.units import Case, Unit

MODEL_NB = "1_model.ipynb"


def _grads(out, tensors, seed):
    """Gradients of <out, fixed random cotangent> w.r.t. ``tensors``."""
    cotangent = randn(seed, *out.shape).to(out)
    return torch.autograd.grad((out * cotangent).sum(), tensors, allow_unused=True)


# -- deformable sampling (pure PyTorch) -------------------------------------------------------------
def sampling_inputs(seed, batch, c_in, c_out, size, stride, padding, dilation, groups, offset_scale):
    h, w = size
    k = 3
    h_out = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w_out = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    return {"input": randn(seed, batch, c_in, h, w), "weight": randn(seed + 1, c_out, c_in, k, k, scale=0.3),
            "offset": randn(seed + 2, batch, 2 * groups * k * k, h_out, w_out, scale=offset_scale),
            "stride": stride, "padding": padding, "dilation": dilation}


def call_sampling(ns, x, dev):
    tensors = [x[n].detach().clone().requires_grad_(True) for n in ("input", "offset", "weight")]
    out = ns.deform_conv2d_sampling(tensors[0], tensors[1], tensors[2], stride=x["stride"],
                                    padding=x["padding"], dilation=x["dilation"])
    return (out.detach(), *_grads(out, tensors, 7))


SAMPLING_CASES = (
    Case("zero offsets = plain convolution", lambda d: sampling_inputs(1, 1, 3, 2, (5, 6), 1, 1, 1, 1, 0.0)),
    Case("random offsets, stride 1, pad 1", lambda d: sampling_inputs(2, 2, 4, 3, (7, 6), 1, 1, 1, 1, 1.5)),
    Case("stride 2, two offset groups", lambda d: sampling_inputs(3, 1, 4, 5, (9, 8), 2, 1, 1, 2, 1.0)),
    Case("dilation 2, offsets far outside the image", lambda d: sampling_inputs(4, 1, 2, 2, (6, 7), 1, 2, 2, 1, 4.0)),
    Case("batch 3, 4 offset groups, stride 2, no padding (hidden)",
         lambda d: sampling_inputs(5, 3, 8, 4, (11, 10), 2, 0, 1, 4, 2.0), public=False),
)


# -- DCNv1 layer ------------------------------------------------------------------------------------
def call_deform_conv(ns, x, dev):
    torch.manual_seed(0)
    layer = as_module(ns.DeformConv2dPack(x["in"], x["out"], 3, x["stride"], 1), "DeformConv2dPack(...)")
    layer = layer.to(dev)
    shapes = parameter_shapes(layer)
    image = x["input"].to(torch.float32)
    with torch.no_grad():
        fresh = layer(image)
        plain = F.conv2d(image, layer.weight, stride=x["stride"], padding=1)
        zero = torch.stack([layer.conv_offset.weight.abs().max(), layer.conv_offset.bias.abs().max()])
    layer = deterministic_weights(layer.to(MODEL_DTYPE))
    with torch.no_grad():
        out = layer(x["input"])
        layer.conv_offset.weight.zero_()
        layer.conv_offset.bias.zero_()
        still = layer(x["input"])           # name-seeded weight, zero offsets: a plain convolution
    return shapes, zero.double(), (fresh - plain).abs().max().double().reshape(1), out, still


def deform_conv_inputs(seed, c_in, c_out, size, stride):
    return {"input": randn(seed, 2, c_in, *size), "in": c_in, "out": c_out, "stride": stride}


DEFORM_CONV_CASES = (
    Case("8 -> 6 channels, stride 1", lambda d: deform_conv_inputs(11, 8, 6, (7, 9), 1)),
    Case("4 -> 8 channels, stride 2", lambda d: deform_conv_inputs(12, 4, 8, (10, 9), 2)),
    Case("16 -> 16 channels, stride 2, odd size (hidden)", lambda d: deform_conv_inputs(13, 16, 16, (13, 11), 2),
         public=False),
)


# -- ResNet with GroupNorm ----------------------------------------------------------------------------
def width_mistake(shapes, width):
    """How a ResNetGN built with ``width`` != 64 got its widths wrong (a message), or None."""
    stem = list(shapes.get("conv1.weight", []))[:1]
    first = next((k for k in shapes if k.startswith("layer1.0.conv1.")), None)
    layer1_in = list(shapes[first])[1:2] if first else []
    if width == 64 or (stem != [64] and layer1_in != [64]):
        return None
    if stem == [64] and layer1_in == [64]:
        return (f"width={width} was ignored: conv1 and layer1 have torchvision's 64 channels. Set self.width "
                f"before super().__init__ (the given _make_layer reads it while ResNet builds the stages) "
                f"and rebuild conv1 and bn1 with {width} channels")
    if stem == [64]:
        return (f"with width={width} the stages are narrow but conv1 still has 64 output channels: replace "
                f"conv1 (and bn1) by {width}-channel ones after super().__init__")
    return (f"the stem has {width} channels but the stages were built 64 wide: set self.width before "
            f"super().__init__, which calls the given _make_layer")


def call_resnet(ns, x, dev):
    torch.manual_seed(0)
    width = {"width": x["width"]} if "width" in x else {}      # the default (64) is called without it
    net = as_module(ns.ResNetGN(x["layers"], x["bottleneck"], x["groups"], x["dcn"], **width),
                    "ResNetGN(...)").to(dev)
    shapes = parameter_shapes(net)
    mistake = width_mistake(shapes, x.get("width", 64))
    if mistake:                                  # named before the forward fails on mismatched channels
        raise ValueError(mistake)
    last = [name for name, t in net.state_dict().items() if name.startswith("layer") and name.endswith(
        ("bn3.weight" if x["bottleneck"] else "bn2.weight"))]
    zero_init = torch.tensor([float(net.state_dict()[n].abs().max()) for n in last], dtype=torch.float64)
    net = deterministic_weights(net.to(MODEL_DTYPE)).eval()
    with torch.no_grad():
        feats = net(x["input"])
    return shapes, zero_init, tuple(f.float() for f in feats)


def resnet_inputs(seed, layers, bottleneck, groups, dcn, size, width=None):
    x = {"input": randn(seed, 1, 3, *size), "layers": layers, "bottleneck": bottleneck, "groups": groups,
         "dcn": dcn}
    return x if width is None else dict(x, width=width)


RESNET_CASES = (
    Case("BasicBlock (1, 1, 1, 1), GN 8, no DCN", lambda d: resnet_inputs(21, (1, 1, 1, 1), False, 8,
                                                                           (False,) * 4, (48, 48))),
    Case("BasicBlock (1, 1, 1, 1), GN 16, DCN in layer3 and layer4",
         lambda d: resnet_inputs(22, (1, 1, 1, 1), False, 16, (False, False, True, True), (40, 56))),
    Case("Bottleneck (1, 2, 1, 1), GN 32, DCN in layer3 and layer4, 24 x 24 input",
         lambda d: resnet_inputs(23, (1, 2, 1, 1), True, 32, (False, False, True, True), (24, 24))),
    Case("Bottleneck (2, 1, 1, 1), DCN in layer2 only (hidden)",
         lambda d: resnet_inputs(24, (2, 1, 1, 1), True, 32, (False, True, False, False), (20, 18)), public=False),
    Case("BasicBlock (1, 1, 1, 1), width 16, GN 4, DCN in layer3 and layer4 (the lite backbone)",
         lambda d: resnet_inputs(25, (1, 1, 1, 1), False, 4, (False, False, True, True), (40, 40), 16)),
    Case("Bottleneck (1, 1, 2, 1), width 8, GN 4 (hidden)",
         lambda d: resnet_inputs(26, (1, 1, 2, 1), True, 4, (False,) * 4, (32, 24), 8), public=False),
)


# -- FPN, Inception, head, BiFPN ------------------------------------------------------------------------
def _module_outputs(module, what, dev, inputs):
    module = as_module(module, what).to(dev)
    shapes = parameter_shapes(module)
    module = deterministic_weights(module.to(MODEL_DTYPE)).eval()
    with torch.no_grad():
        out = module(inputs)
    return shapes, tuple(o.float() for o in out)


def call_fpn(ns, x, dev):
    torch.manual_seed(0)
    return _module_outputs(ns.FPN6(x["in"], x["out"], x["groups"]), "FPN6(...)", dev, x["features"])


def fpn_inputs(seed, size, channels, out, groups):
    return {"features": level_features(seed, 1, channels, size, (4, 8, 16, 32)), "in": channels, "out": out,
            "groups": groups}


FPN_CASES = (
    Case("64 x 64 input, 16/32/64/128 -> 32 channels", lambda d: fpn_inputs(31, (64, 64), (16, 32, 64, 128), 32, 8)),
    Case("odd input 50 x 70 (bilinear upsampling to the finer size)",
         lambda d: fpn_inputs(32, (50, 70), (8, 16, 32, 64), 16, 4)),
    Case("100 x 36 input, 64 channels (hidden)", lambda d: fpn_inputs(33, (100, 36), (32, 32, 64, 64), 64, 32),
         public=False),
)


def call_inception(ns, x, dev):
    torch.manual_seed(0)
    return _module_outputs(ns.Inception(x["channels"], x["groups"]), "Inception(...)", dev, x["features"])


def level_inputs(seed, channels, size, groups, levels=6):
    strides = tuple(4 * 2 ** i for i in range(levels))
    return {"features": level_features(seed, 1, (channels,) * levels, size, strides), "channels": channels,
            "groups": groups}


INCEPTION_CASES = (
    Case("32 channels, six levels of a 64 x 64 input", lambda d: level_inputs(41, 32, (64, 64), 4)),
    Case("64 channels, three levels of a 40 x 24 input", lambda d: level_inputs(42, 64, (40, 24), 16, 3)),
    Case("128 channels, GN 32 (hidden)", lambda d: level_inputs(43, 128, (32, 48), 32, 4), public=False),
)


def call_head(ns, x, dev):
    torch.manual_seed(0)
    head = as_module(ns.TinaFaceHead(x["channels"], x["feat"], 3, x["stacked"], x["groups"]), "TinaFaceHead(...)")
    init = torch.stack([head.retina_cls.bias.detach().double().mean(),
                        head.retina_reg.weight.detach().double().abs().max(),
                        head.retina_reg.bias.detach().double().abs().max(),
                        head.retina_iou.weight.detach().double().abs().max(),
                        head.retina_iou.bias.detach().double().abs().max(),
                        head.cls_convs[0].conv.weight.detach().double().std()])
    shapes, out = _module_outputs(head, "TinaFaceHead(...)", dev, x["features"])
    return shapes, init, out


def head_inputs(seed, channels, feat, stacked, groups, size, levels):
    x = level_inputs(seed, channels, size, groups, levels)
    return dict(x, feat=feat, stacked=stacked)


HEAD_CASES = (
    Case("32 channels, 2 stacked convs, six levels of 64 x 64", lambda d: head_inputs(51, 32, 32, 2, 8, (64, 64), 6)),
    Case("16 -> 32 channels, 4 stacked convs, 3 levels of 40 x 56",
         lambda d: head_inputs(52, 16, 32, 4, 8, (40, 56), 3)),
    Case("64 channels, 3 stacked convs (hidden)", lambda d: head_inputs(53, 64, 64, 3, 16, (36, 20), 4),
         public=False),
)


def fusion_inputs(seed, n, shape, weights):
    return {"inputs": [randn(seed + i, *shape) for i in range(n)], "weights": torch.tensor(weights, dtype=torch.float64)}


def call_fusion(ns, x, dev):
    weights = x["weights"].detach().clone().requires_grad_(True)
    inputs = [t.detach().clone().requires_grad_(True) for t in x["inputs"]]
    out = ns.fast_normalized_fusion(inputs, weights)
    return (out.detach(), *_grads(out, [weights, *inputs], 9))


FUSION_CASES = (
    Case("two inputs, positive weights", lambda d: fusion_inputs(61, 2, (2, 3, 4, 4), [1.0, 0.5])),
    Case("three inputs, one negative weight (ReLU makes it 0)",
         lambda d: fusion_inputs(62, 3, (1, 2, 5, 3), [0.7, -0.4, 1.3])),
    Case("tiny weights: eps matters", lambda d: fusion_inputs(63, 2, (1, 1, 3, 3), [1e-4, 3e-4])),
    Case("all weights negative: output 0 (hidden)", lambda d: fusion_inputs(64, 3, (2, 2, 2, 2), [-1.0, -0.5, -2.0]),
         public=False),
)


def call_bifpn(ns, x, dev):
    torch.manual_seed(0)
    layer = as_module(ns.BiFPNLayer(x["channels"], len(x["features"]), x["groups"]), "BiFPNLayer(...)").to(dev)
    shapes = parameter_shapes(layer)
    layer = positive_fusion_weights(deterministic_weights(layer.to(MODEL_DTYPE))).eval()
    with torch.no_grad():
        out = layer(x["features"])
    return shapes, tuple(o.float() for o in out)


BIFPN_CASES = (
    Case("6 levels of a 64 x 64 input, 16 channels", lambda d: level_inputs(71, 16, (64, 64), 4)),
    Case("3 levels of an odd 44 x 60 input, 32 channels", lambda d: level_inputs(72, 32, (44, 60), 8, 3)),
    Case("5 levels, 32 channels, GN 32 (hidden)", lambda d: level_inputs(73, 32, (80, 48), 32, 5), public=False),
)

DEFORM_FORBIDDEN = ("torchvision.ops.deform_conv2d", "torchvision.ops.deform_conv.deform_conv2d",
                    "torch.ops.torchvision.deform_conv2d", "torchvision.ops.DeformConv2d")

UNITS = (
    Unit("deform_sampling", MODEL_NB, call_sampling, oracle_checked(SAMPLING_CASES), forbidden=DEFORM_FORBIDDEN),
    Unit("deform_conv", MODEL_NB, call_deform_conv, oracle_checked(DEFORM_CONV_CASES)),  # wraps torchvision's op on purpose
    Unit("group_norm_resnet", MODEL_NB, call_resnet, RESNET_CASES, depends=("deform_conv",)),
    Unit("fpn6", MODEL_NB, call_fpn, FPN_CASES),
    Unit("inception", MODEL_NB, call_inception, INCEPTION_CASES),
    Unit("tinaface_head", MODEL_NB, call_head, HEAD_CASES),
    Unit("fast_normalized_fusion", MODEL_NB, call_fusion, oracle_checked(FUSION_CASES)),
    Unit("bifpn_layer", MODEL_NB, call_bifpn, BIFPN_CASES, depends=("fast_normalized_fusion",)),
)
