"""Execute a homework's notebooks headless, in order, with parameters (``make solutions``).

    python -m utils.run_notebooks [--hw retinaface] [--source solutions] [--out outputs/solutions]
        [--param NAME=VALUE ...] [NOTEBOOK ...]

Each notebook runs in a fresh Jupyter kernel (nbclient) from its own folder, as Jupyter would run
it, so later notebooks import the earlier ones' answers. ``--param`` overrides variables of the
cell tagged ``parameters`` (as papermill does: a cell assigning them is inserted right after it;
values are Python literals, anything else is taken as a string); a notebook without a parameter of
that name ignores it. Executed copies, with their outputs, go to ``--out/<hw>/``; a failing cell
stops the run with the notebook and cell named, and the partly executed copy is still written.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from utils.homeworks import NAMES, homework

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
CELL_TIMEOUT = 4 * 3600  # seconds; training cells of a full run take minutes


def parse_params(pairs: list[str]) -> dict:
    """``["EPOCHS=2", "DATA_ROOT=/tmp/d"]`` -> ``{"EPOCHS": 2, "DATA_ROOT": "/tmp/d"}``."""
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param expects NAME=VALUE with a Python identifier, got {pair!r}")
        try:
            params[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[name] = text
    return params


def inject_parameters(nb: nbformat.NotebookNode, params: dict) -> list[str]:
    """Insert an assignment cell after the ``parameters`` cell for the names it defines; returns
    the names injected."""
    for index, cell in enumerate(nb.cells):
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            defined = {t.id for node in ast.walk(ast.parse(cell.source))
                       if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
            names = [n for n in params if n in defined]
            if names:
                source = "# Parameters injected by utils.run_notebooks\n" + "\n".join(
                    f"{n} = {params[n]!r}" for n in names)
                injected = nbformat.v4.new_code_cell(source)
                injected.metadata["tags"] = [INJECTED_TAG]
                nb.cells.insert(index + 1, injected)
            return names
    return []


def run_notebook(path: Path, out_path: Path, params: dict) -> float:
    """Execute one notebook from its folder; returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    injected = inject_parameters(nb, params)
    print(f"running {path.name}" + (f" with {', '.join(injected)}" if injected else ""), flush=True)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    try:
        client.execute()
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out_path))
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names (default: every notebook, in order)")
    parser.add_argument("--hw", default="retinaface", choices=NAMES)
    parser.add_argument("--source", type=Path, default=REPO_ROOT / "solutions")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "solutions")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    params = parse_params(args.param)
    folder = args.source / args.hw
    paths = [folder / name for name in homework(args.hw).notebooks]  # course order (utils.homeworks)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        parser.error(f"{folder}: missing {', '.join(missing)} (the notebooks of {args.hw} in utils/homeworks.py)")
    if args.notebooks:
        wanted = {Path(n).stem for n in args.notebooks}
        paths = [p for p in paths if p.stem in wanted]
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            parser.error(f"no such notebook in {folder}: {sorted(unknown)}")
    for path in paths:
        out_path = args.out / args.hw / path.name
        try:
            seconds = run_notebook(path, out_path, params)
        except CellExecutionError as err:
            print(f"{path.name} failed; executed copy in {out_path}:\n{err}", file=sys.stderr)
            return 1
        print(f"  done in {seconds:.0f} s -> {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
