"""The final project's upload: one trained detector in a file the grader can check and load safely.

    python -m utils.challenge pack --model M [--cfg C] --weights W --out DIR [--impl IMPL]
    python -m utils.challenge check FILE [--impl IMPL]

``pack`` writes what a student uploads, the folder ``DIR``:

* ``DIR/challenge.pt``: ``{"model": M, "cfg": C, "state_dict": {name: tensor}}``, written with
  ``torch.save`` and loadable with ``torch.load(weights_only=True)``. ``M`` is a homework of the
  registry (``utils.homeworks``), ``C`` a config name of that homework's adapter (``CONFIGS``;
  default its ``LITE`` config). Every kit tool that takes ``--weights`` reads the file as it is
  (``detector.weights.read_state_dict`` picks its ``state_dict``).
* ``DIR/<M>/*.ipynb``: copies of the notebooks of homework ``M`` that ``--impl`` holds (those of the
  registry entry; the ones the adapter reads must be there). A homework's model code is the
  student's own, so the grader builds the model from these notebooks (``impl=DIR``), exactly as
  ``utils.detectors.load_model`` does with a student's folder.

``--impl`` is where the notebooks are, as for every kit tool: 'solutions', or a folder laid out like
``assignments/`` (``IMPL/<M>/*.ipynb``) or holding the notebooks directly. Its default,
``assignments``, is the release's folder of the current directory: a student runs ``pack`` from the
kit's root, where they work in ``assignments/<M>/``.

``--weights`` is a kit training checkpoint (``checkpoints/best.pt``) or a plain state dict, read by
the kit's one reader (``utils.detectors.load_model`` -> ``utils.detectors.weights.load_weights`` ->
``detector.weights.read_state_dict``): the weights are loaded into the model built from ``--impl``'s
notebooks, and that model's state dict is what is packed.

``validate(path, impl=None) -> Challenge`` is the one check, used by ``pack`` (before writing, on the
packed bytes, and again on the written folder), by ``check`` and by the grader. It raises
``ChallengeError`` (one line, naming the file) for, in this order:

1. no file, a folder, or a file that cannot be read;
2. a file over ``MAX_BYTES`` (50 MB = 50,000,000 bytes; checked before loading);
3. a file ``torch.load(weights_only=True)`` refuses (any pickled object beyond tensors and plain values);
4. not a dict, or a dict without one of the keys ``model``, ``cfg``, ``state_dict`` (other keys are
   ignored), or values of the wrong type (``state_dict``: parameter name -> tensor);
5. an unknown model (the known ones named);
6. an unknown config of that model (its configs named);
7. NaN or inf in a floating-point tensor (the first such one named);
8. a state dict that does not fit the model built with that config from ``impl``'s notebooks (default:
   the notebooks beside the file, ``<folder of FILE>/<M>/``): the first missing key, else the first
   tensor whose shape differs (both shapes), else the first unexpected key (in the model's order,
   then the file's); a model that cannot be built from those notebooks is refused too;
9. weights that are a published checkpoint (``utils.published_weights``: the public RetinaFace
   MobileNet-0.25 packed as it is), not a detector the student trained.

``pack`` refuses with the same messages (``error: ...``, exit code 2), writes nothing while the packed
bytes fail, and removes ``DIR/challenge.pt`` if the written folder fails (the notebook copies stay).
"""
from __future__ import annotations

import argparse
import io
import pickle
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.cli import run
from utils.detectors import ADAPTERS, UserError, adapter, load_model
from utils.detectors.notebooks import notebook_folder
from utils.homeworks import homework
from utils.published_weights import refusal, same_as_published
from utils.training.checkpoint import atomic_save

FILE_NAME = "challenge.pt"
KEYS = ("model", "cfg", "state_dict")
MAX_BYTES = 50_000_000               # 50 MB (decimal): the largest challenge file the grader loads
DEFAULT_IMPL = "assignments"         # pack's notebooks: the release folder of the current directory
MESSAGE_CHARS = 400                  # a quoted library error is cut to this many characters


class ChallengeError(UserError):
    """A challenge file the grader refuses; its message is one line naming the file and the problem
    (a ``UserError``: the command-line tools print it and exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class Challenge:
    """A challenge file that passed ``validate``."""

    path: Path                       # the file
    model: str                       # homework name (utils.homeworks)
    cfg: str                         # config name of that homework's adapter
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    size: int                        # bytes on disk
    impl: str | Path                 # whose notebooks build the model ('solutions' or a folder)

    def load(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The detector's network with these weights, built from ``impl``'s notebooks, in eval mode."""
        return load_model(self.model, self.cfg, self.impl, weights=self.path, device=device)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _first_line(err: BaseException) -> str:
    """A library error in one short line: the line that names the problem (weights_only's
    'Unsupported global: ...'), else the first non-empty one."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line.split("error:", 1)[-1].strip() for line in lines if "WeightsUnpickler error" in line]
    text = (named or lines or [""])[0].split(". ")[0].rstrip(".")   # its first sentence
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def check_model_cfg(model: Any, cfg: Any, where: str) -> None:
    """A known homework and one of its config names, else a ChallengeError naming the known ones."""
    if not isinstance(model, str) or model not in ADAPTERS:
        raise ChallengeError(f"{where}: unknown model {model!r}; known models: {', '.join(ADAPTERS)}")
    configs = adapter(model).CONFIGS
    if not isinstance(cfg, str) or cfg not in configs:
        raise ChallengeError(f"{where}: unknown config {cfg!r} for model {model}; its configs: "
                             f"{', '.join(configs)}")


def _check_fit(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], where: str, what: str) -> None:
    missing = [k for k in own if k not in state]
    if missing:
        raise ChallengeError(f"{where}: the state_dict does not fit {what}: missing key {missing[0]!r} "
                             f"({len(missing)} missing)")
    for key, tensor in own.items():
        if state[key].shape != tensor.shape:
            raise ChallengeError(f"{where}: the state_dict does not fit {what}: {key!r} has shape "
                                 f"{tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in the model")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ChallengeError(f"{where}: the state_dict does not fit {what}: unexpected key "
                             f"{unexpected[0]!r} ({len(unexpected)} unexpected)")


def check_payload(obj: Any, path: Path, size: int, impl: str | Path, where: str | None = None) -> Challenge:
    """Checks 4-8 of ``validate`` on a loaded payload; ``where`` names it in the errors (default
    ``path``)."""
    where = str(path) if where is None else where
    if not isinstance(obj, dict):
        raise ChallengeError(f"{where}: holds a {type(obj).__name__}, expected a dict with keys "
                             f"{', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in obj]
    if missing:
        hint = (" (a bare state dict? pack it with python -m utils.challenge pack)"
                if len(missing) == len(KEYS) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()) else "")
        raise ChallengeError(f"{where}: missing key{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing))}; a challenge file is a dict with keys "
                             f"{', '.join(KEYS)}{hint}")
    model, cfg, state = obj["model"], obj["cfg"], obj["state_dict"]
    check_model_cfg(model, cfg, where)
    if not isinstance(state, dict):
        raise ChallengeError(f"{where}: 'state_dict' holds a {type(state).__name__}, expected a dict "
                             f"(parameter name -> tensor)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ChallengeError(f"{where}: 'state_dict' maps {key!r} to a {type(value).__name__}, "
                                 f"expected parameter names (str) -> tensors")
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
            if nan or inf:
                found = " and ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "inf")) if n)
                raise ChallengeError(f"{where}: parameter {key!r} holds {found} (of {value.numel()} values); "
                                     f"every weight must be finite")
    what = f"{model} with config {cfg!r}"
    with torch.random.fork_rng(devices=[]):   # building the model draws random weights: not the caller's
        try:
            net = load_model(model, cfg, impl, seed=0)
        except UserError as err:
            raise ChallengeError(f"{where}: cannot build {what} to check the state_dict against: {err}") from err
    _check_fit(state, net.state_dict(), where, what)
    published = same_as_published(state)
    if published is not None:
        raise ChallengeError(f"{where}: {refusal(published)}")
    return Challenge(Path(path), model, cfg, state, size, impl)


def validate(path: str | Path, impl: str | Path | None = None) -> Challenge:
    """The challenge file ``path`` as the grader accepts it, else a one-line ``ChallengeError``.
    The model is built from ``impl``'s notebooks (default: the folder holding ``path``, which holds
    them in ``<model>/`` as ``pack`` writes them). See the module's docstring for the checks."""
    path = Path(path)
    if not path.exists():
        raise ChallengeError(f"{path}: no such file")
    if not path.is_file():
        raise ChallengeError(f"{path}: not a file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ChallengeError(f"{path}: too large: {_mb(size)} ({size} bytes), over the "
                                 f"{MAX_BYTES // 1_000_000} MB limit")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ChallengeError(f"{path}: cannot read the file ({err.strerror or err})") from err
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, KeyError, IndexError, OSError) as err:
        raise ChallengeError(f"{path}: not loadable with torch.load(weights_only=True): {_first_line(err)}") from err
    return check_payload(obj, path, size, path.parent if impl is None else impl)


def pack(model: str, cfg: str | None, weights: str | Path, out: str | Path,
         impl: str | Path = DEFAULT_IMPL) -> Challenge:
    """Write ``out/challenge.pt`` and ``out/<model>/`` (the notebooks of ``impl``); the written folder
    passed ``validate``. A refusal raises ``ChallengeError`` (or the kit's ``UserError`` for a
    checkpoint or notebook folder it cannot read)."""
    out, weights = Path(out), Path(weights)
    if cfg is None and model in ADAPTERS:
        cfg = adapter(model).LITE
    check_model_cfg(model, cfg, "pack")
    source, _ = notebook_folder(model, impl, adapter(model).NOTEBOOKS)   # also: the adapter's notebooks exist
    net = load_model(model, cfg, impl, weights=weights)            # the kit's checkpoint reader and fit check
    payload = {"model": model, "cfg": cfg, "state_dict": net.state_dict()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    size = buffer.getbuffer().nbytes
    target = out / FILE_NAME
    where = f"{target} (packed from {weights})"
    if size > MAX_BYTES:
        raise ChallengeError(f"{where}: too large: {_mb(size)} ({size} bytes), over the "
                             f"{MAX_BYTES // 1_000_000} MB limit")
    buffer.seek(0)
    check_payload(torch.load(buffer, map_location="cpu", weights_only=True), target, size, impl, where)

    notebooks = out / model
    notebooks.mkdir(parents=True, exist_ok=True)
    for name in homework(model).notebooks:
        if (source / name).is_file() and not ((notebooks / name).exists()
                                               and (notebooks / name).samefile(source / name)):
            shutil.copy2(source / name, notebooks / name)
    atomic_save(payload, target)
    try:
        return validate(target)          # as the grader will: the notebooks beside the file
    except ChallengeError:
        target.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack", help="write the folder to upload: challenge.pt and the notebooks")
    packer.add_argument("--model", required=True, help=f"the homework: {', '.join(ADAPTERS)}")
    packer.add_argument("--cfg", help="config name of the model (default: its CPU lite config)")
    packer.add_argument("--weights", required=True, type=Path,
                        help="a kit training checkpoint (checkpoints/best.pt) or a plain state dict")
    packer.add_argument("--out", required=True, type=Path, help="the folder to write (and upload)")
    packer.add_argument("--impl", default=DEFAULT_IMPL,
                        help=f"'solutions' or the folder of your notebooks (default: {DEFAULT_IMPL})")
    checker = commands.add_parser("check", help="check a challenge file as the grader does")
    checker.add_argument("file", type=Path)
    checker.add_argument("--impl", help="the notebooks that build the model (default: beside FILE)")
    args = parser.parse_args(argv)

    if args.command == "pack":
        challenge = pack(args.model, args.cfg, args.weights, args.out, args.impl)
        print(f"wrote {challenge.path} ({_mb(challenge.size)}, {challenge.model} {challenge.cfg}) and the "
              f"notebooks in {challenge.path.parent / challenge.model}/: upload the folder {args.out}")
    else:
        challenge = validate(args.file, args.impl)
        print(f"OK {challenge.path}: {challenge.model} {challenge.cfg}, {len(challenge.state_dict)} tensors, "
              f"{_mb(challenge.size)}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
