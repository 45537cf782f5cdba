"""Published checkpoints: how far an upload's weights are from weights anyone can download.

    python -m utils.published_weights add --name N --model M --cfg C --weights W --source TEXT
    python -m utils.published_weights check FILE       # the distance of a challenge.pt from each

The final project grades a detector the student trained. A published checkpoint (the public
RetinaFace MobileNet-0.25 of ``../shared/data/checkpoints/``, trained on the real WIDER FACE by its
authors) packed as it is would score full marks, so the kit keeps a fingerprint of each one in
``utils/published_weights.json``: for every weight tensor with two or more dimensions (convolution
and linear kernels: the ones a training run rewrites; BatchNorm scales start at 1 whatever the
source), ``SAMPLES`` values at positions drawn from the tensor's name, keyed by the packed name and
shape. The file is small (public numbers of public files) and ships wherever ``utils/`` does.

``distance(state_dict)`` compares an upload with each fingerprint: per matched tensor the relative
distance ``||u - p|| / ||p||`` of the sampled values, and its median over the tensors. Measured on
RetinaFace MobileNet-0.25 (the public checkpoint against the kit's model with the solutions'
code; ``tests/test_published_weights.py`` keeps these): its initial random weights 1.19 (every
tensor 1.05-2.28: independent weights), 3 SGD steps of fine-tuning at lr 1e-3 0.003, 3 steps at
lr 1e-2 0.022, 20 steps at lr 1e-2 0.135. Hence:

* ``SAME`` (median <= 1e-3; float16 storage rounds by at most 5e-4): the published checkpoint
  itself. ``utils.challenge.validate`` refuses it (so ``pack`` and the grader do), and the grader's
  scoring side checks it again on the file (the worker runs student code).
* ``STARTS_FROM`` (median < 0.5, far below the ~1.2 of weights trained apart): fine-tuned from it.
  Not refused (a course may allow transfer learning); the staff review lists it with the distance,
  for a person to judge against the course's rules.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

FINGERPRINTS = Path(__file__).with_name("published_weights.json")
SAMPLES = 16            # values kept per tensor
SAME = 1e-3             # median relative distance at or below which the weights are the published ones
STARTS_FROM = 0.5       # below it the weights start from the published ones (fine-tuned)
MIN_MATCHED = 0.9       # share of a fingerprint's tensors an upload must hold (name and shape) to compare


@dataclass(frozen=True)
class Match:
    """An upload's distance from one published checkpoint."""

    name: str           # the fingerprint's name
    source: str         # where it is published
    median: float       # median over the matched tensors of the relative distance
    matched: int        # tensors compared

    @property
    def same(self) -> bool:
        return self.median <= SAME

    @property
    def starts_from(self) -> bool:
        return self.median < STARTS_FROM

    def describe(self) -> str:
        return (f"{self.name} ({self.source}): median relative distance of the weights "
                f"{self.median:.2g} over {self.matched} tensors")


def _positions(name: str, numel: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randint(numel, (min(SAMPLES, numel),), generator=generator)


def fingerprint(state_dict: dict[str, torch.Tensor]) -> dict[str, dict]:
    """{name: {"shape", "values"}} of the state dict's floating-point tensors with >= 2 dimensions."""
    out = {}
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dim() >= 2:
            flat = tensor.detach().reshape(-1).double()
            out[name] = {"shape": list(tensor.shape), "values": flat[_positions(name, flat.numel())].tolist()}
    return out


def load_fingerprints(path: Path = FINGERPRINTS) -> dict[str, dict]:
    """{name: {"source", "model", "cfg", "tensors"}} of every published checkpoint the kit knows."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def distance(state_dict: dict[str, torch.Tensor], fingerprints: dict[str, dict] | None = None) -> list[Match]:
    """The upload's distance from each published checkpoint whose tensors it holds (names and
    shapes), nearest first."""
    fingerprints = load_fingerprints() if fingerprints is None else fingerprints
    matches = []
    for name, published in fingerprints.items():
        tensors = published["tensors"]
        ratios = []
        for key, entry in tensors.items():
            tensor = state_dict.get(key)
            if not isinstance(tensor, torch.Tensor) or list(tensor.shape) != entry["shape"] \
                    or not tensor.is_floating_point():
                continue
            flat = tensor.detach().reshape(-1).double()
            mine, theirs = flat[_positions(key, flat.numel())], torch.tensor(entry["values"], dtype=torch.float64)
            ratios.append(float((mine - theirs).norm() / theirs.norm().clamp_min(1e-12)))
        if ratios and len(ratios) >= MIN_MATCHED * len(tensors):
            matches.append(Match(name, published["source"], float(torch.tensor(ratios).median()), len(ratios)))
    return sorted(matches, key=lambda m: m.median)


def same_as_published(state_dict: dict[str, torch.Tensor]) -> Match | None:
    """The published checkpoint these weights are (``Match.same``), else None."""
    return next((m for m in distance(state_dict) if m.same), None)


def refusal(match: Match) -> str:
    """The one-line reason an upload equal to a published checkpoint is refused."""
    return (f"the weights are the published checkpoint {match.describe()}, not a detector you trained: "
            f"train one on the embedded training split (the final project's notebook) and pack that")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add (or replace) a published checkpoint's fingerprint")
    add.add_argument("--name", required=True)
    add.add_argument("--model", required=True)
    add.add_argument("--cfg", required=True)
    add.add_argument("--weights", required=True, type=Path)
    add.add_argument("--source", required=True, help="where anyone can download it")
    check = commands.add_parser("check", help="the distance of a challenge.pt from each published checkpoint")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "add":
        from utils.detectors import load_model

        net = load_model(args.model, args.cfg, "solutions", weights=args.weights)   # the packed names
        known = load_fingerprints()
        known[args.name] = {"source": args.source, "model": args.model, "cfg": args.cfg,
                            "tensors": fingerprint(net.state_dict())}
        FINGERPRINTS.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        print(f"{FINGERPRINTS}: {args.name} ({len(known[args.name]['tensors'])} tensors)")
        return 0
    state = torch.load(args.file, map_location="cpu", weights_only=True)
    for match in distance(state.get("state_dict", state) if isinstance(state, dict) else {}):
        verdict = "SAME" if match.same else "STARTS FROM" if match.starts_from else "apart"
        print(f"{verdict}: {match.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
