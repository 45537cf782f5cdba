"""Running a student's ``nn.Module`` so that its outputs do not depend on its random initialisation.

Every floating-point state_dict entry is overwritten from a generator seeded by the entry's name, so
a module with the right names and shapes computes exactly the solution's function. Modules run in
float64: CPU and GPU then agree far inside the grading tolerances (float32 convolutions may use TF32
on GPUs), and a module's names are graded on their own.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import torch
from torch import nn

MODEL_DTYPE = torch.float64
BIAS_STD = 0.1                 # biases and BatchNorm running means: small
BN_SCALE_RANGE = (0.5, 1.5)    # BatchNorm weights and running variances: well away from 0


def deterministic_weights(module: nn.Module) -> nn.Module:
    """Overwrite ``module``'s floating-point state in place, each entry from its name: weights with
    2+ dims ~ N(0, 1/fan_in); 1-D weights (BatchNorm scales) and running variances ~ U(0.5, 1.5);
    biases and running means ~ N(0, 0.1²). Integer buffers (num_batches_tracked) are left alone."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            leaf = name.rsplit(".", 1)[-1]
            if tensor.dim() >= 2:
                fan_in = max(1, tensor.numel() // max(1, tensor.shape[0]))
                values = torch.randn(tensor.shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
            elif leaf in ("weight", "running_var"):
                low, high = BN_SCALE_RANGE
                values = low + (high - low) * torch.rand(tensor.shape, generator=g, dtype=torch.float64)
            else:
                values = BIAS_STD * torch.randn(tensor.shape, generator=g, dtype=torch.float64)
            tensor.copy_(values)
    return module


def as_module(obj: Any, what: str) -> nn.Module:
    """``obj`` if it is an nn.Module; else a TypeError naming ``what`` was built."""
    if not isinstance(obj, nn.Module):
        raise TypeError(f"{what} should be an nn.Module, got a {type(obj).__name__}")
    return obj


def parameter_shapes(module: nn.Module) -> dict[str, list[int]]:
    """{state_dict name: shape}: what a checkpoint must provide to load into ``module``."""
    return {name: list(t.shape) for name, t in module.state_dict().items()}


def run_deterministic(module: nn.Module, inputs: Any, device: torch.device) -> Any:
    """``module(inputs)`` in eval mode, without gradients, in float64 with name-seeded weights."""
    module = deterministic_weights(module.to(device=device, dtype=MODEL_DTYPE)).eval()
    with torch.no_grad():
        return module(inputs)
