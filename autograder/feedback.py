"""Comparisons that explain themselves: which case failed, expected vs received shape and dtype,
and the largest error — never a wall of traceback."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autograder.sandbox.transfer import Opaque

# Kinds of failure, as the score table shows them.
WRONG = "wrong answer"
NOT_IMPLEMENTED = "not implemented yet"
ERROR = "error"
MISSING = "missing"
TIMEOUT = "time limit"
CRASHED = "crashed"
TAMPERED = "tampered"

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


class GradingFailure(AssertionError):
    """A failed check; ``kind`` is one of the kinds above, the message is the student's feedback.
    ``dependencies``: the units this one calls that the message already names as failing."""

    def __init__(self, message: str, kind: str = WRONG, dependencies: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.dependencies = tuple(dependencies)


def describe(value: Any) -> str:
    """``float32 [7, 5] tensor``, ``int``, ``tuple of 3`` ..."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).replace('torch.', '')} {list(value.shape)} tensor"
    if isinstance(value, np.ndarray):
        return f"numpy {value.dtype} {list(value.shape)} array"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, Opaque):
        return f"{value.type_name} object ({value.text})"
    return type(value).__name__


def _fail(case: str, what: str) -> GradingFailure:
    return GradingFailure(f"case '{case}': {what}")


def expect_tensor(received: Any, case: str, what: str = "result") -> torch.Tensor:
    if isinstance(received, np.ndarray):
        raise _fail(case, f"{what} should be a torch.Tensor, got a {describe(received)} "
                          f"(convert with torch.from_numpy or stay in torch)")
    if not isinstance(received, torch.Tensor):
        raise _fail(case, f"{what} should be a torch.Tensor, got {describe(received)}")
    return received


def expect_close(received: Any, expected: torch.Tensor, case: str, what: str = "result",
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, check_dtype: bool = True,
                 equal_nan: bool = True) -> None:
    """``received`` must be a tensor of ``expected``'s shape (and dtype) with close values."""
    received = expect_tensor(received, case, what)
    if tuple(received.shape) != tuple(expected.shape):
        raise _fail(case, f"{what} has the wrong shape: expected {describe(expected)}, "
                          f"got {describe(received)}")
    if check_dtype and received.dtype != expected.dtype:
        raise _fail(case, f"{what} has the wrong dtype: expected {describe(expected)}, "
                          f"got {describe(received)}")
    if expected.numel() == 0:
        return
    got = received.detach().to(torch.float64)
    want = expected.detach().to(torch.float64)
    nan_mismatch = torch.isnan(got) != torch.isnan(want)
    if equal_nan and nan_mismatch.any():
        idx = tuple(int(i) for i in torch.nonzero(nan_mismatch)[0])
        raise _fail(case, f"{what}{list(idx)}: expected {want[idx].item():.6g}, got {got[idx].item():.6g}")
    both = ~(torch.isnan(got) & torch.isnan(want)) if equal_nan else torch.ones_like(got, dtype=torch.bool)
    err = torch.where(both, (got - want).abs(), torch.zeros_like(got))
    err = torch.nan_to_num(err, nan=float("inf"))
    allowed = atol + rtol * want.abs().nan_to_num(0.0)
    bad = err > allowed
    if bad.any():
        flat = int(torch.argmax(torch.where(bad, err, torch.zeros_like(err))))
        idx = tuple(int(i) for i in np.unravel_index(flat, tuple(got.shape))) if got.dim() else ()
        raise _fail(case, f"{what} differs at {int(bad.sum())} of {got.numel()} entries; largest error "
                          f"{err[idx].item():.4g} at {list(idx)} (expected {want[idx].item():.6g}, got "
                          f"{got[idx].item():.6g}; tolerance {atol:g} + {rtol:g}·|expected|)")


def expect_equal(received: Any, expected: torch.Tensor, case: str, what: str = "result") -> None:
    """Exact equality of integer/bool tensors (indices, labels), with a readable difference."""
    received = expect_tensor(received, case, what)
    if tuple(received.shape) != tuple(expected.shape):
        raise _fail(case, f"{what} has the wrong shape: expected {describe(expected)}, "
                          f"got {describe(received)}"
                          + (f" — expected {expected.tolist()}, got {received.tolist()}"
                             if expected.numel() <= 12 and received.numel() <= 12 else ""))
    if received.dtype.is_floating_point != expected.dtype.is_floating_point:
        raise _fail(case, f"{what} has the wrong dtype: expected {describe(expected)}, "
                          f"got {describe(received)}")
    diff = received.cpu() != expected.cpu()
    if diff.any():
        idx = tuple(int(i) for i in torch.nonzero(diff)[0])
        raise _fail(case, f"{what} differs at {int(diff.sum())} of {expected.numel()} entries; first at "
                          f"{list(idx)}: expected {expected[idx].item()}, got {received[idx].item()}")


def expect_type(received: Any, types: type | tuple[type, ...], case: str, what: str = "result") -> None:
    if not isinstance(received, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise _fail(case, f"{what} should be a {names}, got {describe(received)}")


def reordered(received: Any, expected: torch.Tensor, rtol: float = DEFAULT_RTOL,
              atol: float = DEFAULT_ATOL) -> bool:
    """True when ``received`` holds ``expected``'s values (within tolerance) in another order: the
    mark of a permute/view or concatenation-order mistake, worth its own feedback."""
    if not isinstance(received, torch.Tensor) or tuple(received.shape) != tuple(expected.shape):
        return False
    if expected.numel() == 0:
        return False
    got = received.detach().cpu().to(torch.float64).flatten()
    want = expected.detach().cpu().to(torch.float64).flatten()
    return (torch.allclose(got.sort().values, want.sort().values, rtol=rtol, atol=atol)
            and not torch.allclose(got, want, rtol=rtol, atol=atol))


MAX_NAMES_SHOWN = 6


def summarize_names(names: list[str], limit: int = MAX_NAMES_SHOWN) -> str:
    """``body.* (150 names, e.g. body.stage1.0.0.weight), ssh1.conv3X3.0.weight`` — names grouped
    by their first dotted component, so one misnamed module reads as one line."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    parts = [members[0] if len(members) == 1 else f"{prefix}.* ({len(members)} names, e.g. {members[0]})"
             for prefix, members in groups.items()]
    more = f", … ({len(parts) - limit} more groups)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def expect_names(received: Any, expected: list[str], case: str, what: str = "names") -> None:
    """``received`` must be a list (or tuple or dict keys) of exactly the ``expected`` strings, in any
    order; the feedback lists the missing and the unexpected ones."""
    if isinstance(received, dict):
        received = list(received)
    if not isinstance(received, (list, tuple)) or not all(isinstance(n, str) for n in received):
        raise _fail(case, f"{what} should be a list of strings, got {describe(received)}")
    have, want = set(received), set(expected)
    missing = [n for n in expected if n not in have]
    unexpected = [n for n in received if n not in want]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {summarize_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {summarize_names(unexpected)}")
    if problems:
        raise _fail(case, f"{what} differ — " + "; ".join(problems))
