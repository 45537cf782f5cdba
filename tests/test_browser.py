"""The student's path in a real browser: JupyterLab from the kit's venv, in headless Chromium.

Every other test runs notebooks headless (nbclient). This one does what a student does in the first
hour: opens a released notebook in JupyterLab, runs the set-up and a check cell, types an answer
into the editor, re-runs the check, saves, and grades the saved notebook; it also checks that a plot
renders, that each extension homework's first cell runs, and that the student bundle's `make lab`
shows the homework's notebooks.

The browser is Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it), driven by
playwright (requirements.txt) through `executable_path`: no browser build is ever downloaded.
`KIT_CHROMIUM=/path/to/chromium` picks another binary. Without a browser the module skips, except
under `CI=true`, where it fails. Every JupyterLab runs on 127.0.0.1 with a token and its config,
data, settings and HOME in a temporary folder; screenshots and server logs go to outputs/browser/.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from utils.homeworks import NAMES, homework

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "outputs" / "browser"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which(os.environ.get("KIT_CHROMIUM", "chromium"))
INSTALL = "apt-get install chromium"
if CHROMIUM is None and not IN_CI:
    pytest.skip(f"no Chromium for the browser tests: install it with `{INSTALL}` (Debian)",
                allow_module_level=True)

from playwright.sync_api import Error as PlaywrightError  # noqa: E402  (unneeded when the module skips)
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

NOTEBOOK = "assignments/retinaface/4_matching_nms.ipynb"
UNIT = "intersect"
# A correct `intersect`, typed line by line into its answer cell over `raise NotImplementedError()`.
ANSWER = ["    wh = (torch.min(box_a[:, None, 2:], box_b[None, :, 2:])"
          " - torch.max(box_a[:, None, :2], box_b[None, :, :2])).clamp(min=0)",
          "    return wh[..., 0] * wh[..., 1]"]
PLOT_NOTEBOOK = "solutions/retinaface/3_anchors.ipynb"   # its figure needs a working PriorBox
BUNDLE_HW = "retinaface"
EXTENSIONS = [name for name in NAMES if name != "retinaface"]
KIT_PIECES = ("autograder", "detector", "data", "utils", "assignments")
# JupyterLab user settings of the temporary lab: no auto-closed brackets while typing (and no line
# wrapping, so Shift+Home means the line's start), every cell in the page (no windowing), no
# question about fetching news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
        {"codeCellConfig": {"autoClosingBrackets": False, "lineNumbers": False, "lineWrap": False},
         "windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}
SERVER_START_S = 90
KERNEL_RUN_S = 90      # a fresh kernel's first cell: start-up and `import torch` on a busy machine
STEP_MS = 30_000       # anything else the page has to show


# ------------------------------------------------------------------------------------------------
# JupyterLab servers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


@dataclass
class Lab:
    """One JupyterLab server: its address, token, process (group) and log."""
    url: str
    token: str
    root: Path          # the folder the lab serves
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, command: list[str], cwd: Path, home: Path, name: str,
              root: Path | None = None) -> "Lab":
        """Start `command` (a `jupyter lab`) in `cwd`, serving `root` (default `cwd`), with
        everything Jupyter writes under `home`."""
        port, token = _free_port(), secrets.token_hex(16)
        config = home / "jupyter-config"
        config.mkdir(parents=True)
        (config / "jupyter_server_config.json").write_text(json.dumps({
            "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False,
                          "allow_root": True},   # CI runs as root
            "IdentityProvider": {"token": token}}))
        settings = home / "lab-settings"
        for file, values in LAB_SETTINGS.items():
            (settings / file).parent.mkdir(parents=True, exist_ok=True)
            (settings / file).write_text(json.dumps(values))
        env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(config),
               "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
               "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
               "IPYTHONDIR": str(home / "ipython"), "MPLCONFIGDIR": str(home / "matplotlib")}
        SHOTS.mkdir(parents=True, exist_ok=True)
        log = SHOTS / f"{name}-server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        lab = cls(f"http://127.0.0.1:{port}", token, root or cwd, proc, log)
        lab._wait_ready(" ".join(command))
        return lab

    def _wait_ready(self, command: str) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"`{command}` exited with {self.proc.returncode} before "
                                     f"serving; log: {self.log}\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:        # not listening yet (URLError, refused, reset, timeout)
                time.sleep(0.25)   # polling the server, not waiting blindly
        self.stop()
        raise AssertionError(f"`{command}` did not answer on {self.url} within {SERVER_START_S} s; "
                             f"log: {self.log}\n{self.log_tail()}")

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, path: str = "") -> str:
        """A page of this lab in a workspace of its own (so no tab of an earlier page reopens);
        `tree/<file>` opens a file."""
        return f"{self.url}/lab/workspaces/w{secrets.token_hex(4)}/{path}?token={self.token}"

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        """Kernels first (through the API), then the server's process group (`make` and its
        `jupyter lab`, or `jupyter lab` alone): TERM, then KILL what is left after 15 s."""
        if self.proc.poll() is None:
            try:
                self.shutdown_kernels()
            except OSError:
                pass   # the server is not answering: its process group goes anyway
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 15
            while not self._gone() and time.monotonic() < deadline:
                time.sleep(0.1)   # polling for the processes to end
            if self._gone():
                break
        self.proc.wait(timeout=5)

    def _gone(self) -> bool:
        return self.proc.poll() is not None and not _group_alive(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module", autouse=True)
def fresh_shots():
    """outputs/browser/ holds this run's screenshots and logs only."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the kit's pieces a notebook imports, plus the release: the student's folder."""
    root = tmp_path_factory.mktemp("kit")
    for piece in KIT_PIECES:
        shutil.copytree(REPO / piece, root / piece, ignore=shutil.ignore_patterns("__pycache__"))
    (root / PLOT_NOTEBOOK).parent.mkdir(parents=True)
    shutil.copy(REPO / PLOT_NOTEBOOK, root / PLOT_NOTEBOOK)
    return root


@pytest.fixture(scope="module")
def lab(workspace, tmp_path_factory):
    """JupyterLab of the kit's venv, serving the workspace copy."""
    server = Lab.start([str(Path(sys.executable).parent / "jupyter"), "lab"], cwd=workspace,
                       home=tmp_path_factory.mktemp("lab-home"), name="kit")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail(f"CI=true but no Chromium for the browser tests: install it with `{INSTALL}` "
                    f"(.ci/run does) or point KIT_CHROMIUM at one")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (its own cookies and storage)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(STEP_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def kit_page(page, lab):
    """A page on the kit's lab; the kernels it started are shut down afterwards."""
    yield page
    lab.shutdown_kernels()


@pytest.fixture
def bundle_lab(tmp_path_factory):
    """The student bundle, built and unzipped, served by its own `make lab` with the kit's venv."""
    from utils.deploy import student

    root = tmp_path_factory.mktemp("bundle")
    archive = student.build(BUNDLE_HW, root / "dist")
    with zipfile.ZipFile(archive) as bundle_zip:
        bundle_zip.extractall(root)
    bundle = root / f"{BUNDLE_HW}-student"
    # The bundle's `make venv` would create .venv from requirements.txt; the kit's venv has the
    # same requirements, so it stands in (-o: do not reinstall into it, whatever the timestamps).
    (bundle / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    server = Lab.start(["make", "lab", "-o", ".venv/.installed-requirements"], cwd=bundle,
                       home=root / "lab-home", name="student-bundle",
                       root=bundle / "assignments" / BUNDLE_HW)   # `jupyter lab assignments/<hw>`
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------------
# Helpers

def screenshot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@contextmanager
def step(page: Page, what: str, shot: str):
    """Fail with `what`, the screenshot's path and the cause if anything inside goes wrong."""
    try:
        yield
    except (AssertionError, PlaywrightError) as err:
        path = screenshot(page, f"FAILED-{shot}")
        raise AssertionError(f"{what}: failed (screenshot: {path})\n{err}") from None


def open_notebook(page: Page, lab: Lab, path: str):
    """Open `path` (relative to the lab's root); return its cells once its kernel is ready."""
    page.goto(lab.page_url(f"tree/{path}"))
    return notebook_cells(page, lab.root / path)


def notebook_cells(page: Page, notebook: Path):
    """The cells of the notebook on show, once all are in the page and its kernel is idle (a cell
    run before the kernel is connected is silently not run)."""
    panel = page.locator(".jp-NotebookPanel:visible")
    cells = panel.locator(".jp-Cell")
    expect(cells).to_have_count(len(nbformat.read(notebook, as_version=4).cells))
    expect(panel.locator(".jp-Toolbar-kernelName")).not_to_have_text(re.compile("No Kernel"),
                                                                      timeout=KERNEL_RUN_S * 1000)
    expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_RUN_S * 1000)
    return cells


def cell_index(notebook: Path, grade_id: str | None = None, contains: str | None = None) -> int:
    """Index of the cell with this nbgrader grade_id, or the first code cell whose source contains
    `contains` (read from the file, so the test follows the notebook's layout)."""
    for i, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        if grade_id is not None and cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
        if contains is not None and cell.cell_type == "code" and contains in cell.source:
            return i
    raise AssertionError(f"{notebook.name} has no cell {grade_id or contains!r}")


def run_cell(page: Page, cell, timeout_s: float = KERNEL_RUN_S) -> None:
    """Select the cell (click its prompt), run it with Ctrl+Enter, wait until it has finished."""
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()
    prompt.click()
    page.keyboard.press("Control+Enter")
    expect(prompt).not_to_have_text(before, timeout=timeout_s * 1000)
    expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=timeout_s * 1000)


def output_of(cell):
    return cell.locator(".jp-OutputArea-output")


def type_lines(page: Page, lines: list[str]) -> None:
    """Type `lines` (with their indentation) at the cursor, which stands at the end of a blank line.

    After Enter the editor indents the new line by itself; Shift+Home on a line holding only that
    indentation selects it, so each line's own indentation replaces whatever the editor chose."""
    for i, line in enumerate(lines):
        if i:
            page.keyboard.press("Enter")
        page.keyboard.press("Shift+Home")
        page.keyboard.type(line)


def wait_for_file(path: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(encoding="utf-8"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} does not hold {text!r} {timeout_s} s after saving")
        time.sleep(0.2)   # polling the file the server writes


def errors_in(cell) -> list[str]:
    """The cell's error outputs: JupyterLab renders a traceback as stderr (red), like a warning, so
    both count (a student cannot tell them apart)."""
    stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    return cell.locator(stderr).all_inner_texts()


def first_code_cell(notebook: Path) -> int:
    cells = nbformat.read(notebook, as_version=4).cells
    return next(i for i, cell in enumerate(cells) if cell.cell_type == "code")


# ------------------------------------------------------------------------------------------------
# Tests

def test_a_student_types_an_answer_checks_saves_and_it_grades(kit_page, lab, workspace, tmp_path):
    page, notebook = kit_page, workspace / NOTEBOOK
    with step(page, f"opening {NOTEBOOK}", "open-4_matching_nms"):
        cells = open_notebook(page, lab, NOTEBOOK)
    setup, answer, check = (cells.nth(cell_index(notebook, grade_id))
                            for grade_id in ("given_setup", UNIT, f"check_{UNIT}"))

    with step(page, f"running the set-up cell, the {UNIT} stub and its check cell", "stub-check"):
        for cell in (setup, answer, check):
            run_cell(page, cell)
        expect(output_of(check)).to_contain_text("not implemented yet")
        assert errors_in(setup) == [], errors_in(setup)
    screenshot(page, "1-stub-checked")

    with step(page, f"typing an answer into the {UNIT} cell's editor", "typing"):
        editor = answer.locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+End")     # the end of `    raise NotImplementedError()`
        page.keyboard.press("Shift+Home")      # selects it back to its indentation
        page.keyboard.press("Backspace")
        type_lines(page, ANSWER)
        expect(editor).to_contain_text(ANSWER[-1].strip())

    with step(page, f"re-running the {UNIT} cell and its check: every check ✓", "answer-check"):
        run_cell(page, answer)
        run_cell(page, check)
        expect(output_of(check)).to_contain_text("✓")
        expect(output_of(check)).not_to_contain_text("✗")
    screenshot(page, "2-answer-checked")

    with step(page, "saving with Ctrl+S", "save"):
        editor.click()
        page.keyboard.press("Control+S")
        wait_for_file(notebook, ANSWER[-1].strip())
    typed = nbformat.read(notebook, as_version=4).cells[cell_index(notebook, UNIT)].source
    assert typed.endswith("\n".join(ANSWER)), f"the saved {UNIT} is not what was typed:\n{typed}"

    # Graded like any submission (-k: only this unit's tests, to keep the file within its time).
    results = tmp_path / "r.json"
    grading = subprocess.run(
        [sys.executable, "-m", "pytest", "autograder/", "--submission",
         str(workspace / "assignments"), "--hw", "retinaface", "--results", str(results), "-q",
         "-k", UNIT],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    log = grading.stdout[-3000:] + grading.stderr[-2000:]
    assert results.is_file(), f"grading wrote no results.json:\n{log}"
    tests = [test for test in json.loads(results.read_text())["tests"]
             if test["name"].startswith(f"{UNIT}:")]
    assert tests and all(t["score"] == t["max_score"] for t in tests), \
        f"the saved {UNIT} did not get its points: {tests}\n{log}"


def test_a_plot_renders_as_an_image(kit_page, lab):
    page, notebook = kit_page, lab.root / PLOT_NOTEBOOK
    with step(page, f"opening {PLOT_NOTEBOOK}", "open-plot"):
        cells = open_notebook(page, lab, PLOT_NOTEBOOK)
    plot = cells.nth(cell_index(notebook, contains="plt.show()"))
    with step(page, f"running {PLOT_NOTEBOOK} up to its anchors figure: a PNG in the page", "plot"):
        for grade_id in ("given_setup", "prior_box"):
            run_cell(page, cells.nth(cell_index(notebook, grade_id)))
        run_cell(page, plot)
        image = plot.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the PNG is broken"
    screenshot(page, "3-plot")


@pytest.mark.parametrize("hw", EXTENSIONS)
def test_an_extension_homeworks_first_cell_runs(kit_page, lab, hw):
    page, path = kit_page, f"assignments/{hw}/{homework(hw).notebooks[0]}"
    with step(page, f"running the first cell of {path}", f"first-cell-{hw}"):
        cells = open_notebook(page, lab, path)
        first = cells.nth(first_code_cell(lab.root / path))
        run_cell(page, first)
        assert errors_in(first) == [], f"error output: {errors_in(first)}"
    screenshot(page, f"4-first-cell-{hw}")


def test_the_student_bundles_make_lab_lists_its_notebooks(page, bundle_lab):
    notebooks = homework(BUNDLE_HW).notebooks
    with step(page, f"the file browser of the bundle's `make lab` listing {', '.join(notebooks)}",
              "bundle-listing"):
        page.goto(bundle_lab.page_url())
        listing = page.locator(".jp-DirListing-content")
        expect(listing).to_be_visible()
        expect(listing.locator(".jp-DirListing-itemText")).to_contain_text(sorted(notebooks))
    screenshot(page, "5-bundle-listing")
    with step(page, f"opening {notebooks[0]} from the file browser and running its first cell",
              "bundle-first-cell"):
        page.locator(".jp-DirListing-item", has_text=notebooks[0]).dblclick()
        cells = notebook_cells(page, bundle_lab.root / notebooks[0])
        first = cells.nth(first_code_cell(bundle_lab.root / notebooks[0]))
        run_cell(page, first)
        assert errors_in(first) == [], f"error output: {errors_in(first)}"
    screenshot(page, "6-bundle-first-cell")
