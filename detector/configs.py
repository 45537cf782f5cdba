"""Named configurations: every homework's ``get_config`` hands out fresh copies the same way."""
from __future__ import annotations

import copy


def copy_config(configs: dict[str, dict], name: str, model: str, **overrides) -> dict:
    """A fresh (deep) copy of ``configs[name]`` with ``overrides`` applied; only existing fields may
    be overridden. ``model`` names the homework in the errors (e.g. 'TinaFace')."""
    if name not in configs:
        raise ValueError(f"unknown {model} config {name!r}; expected one of {sorted(configs)}")
    cfg = copy.deepcopy(configs[name])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown {model} config fields {unknown}; fields are {sorted(cfg)}")
    cfg.update(overrides)
    return cfg
