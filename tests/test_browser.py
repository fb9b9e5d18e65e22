"""The course in a real browser: JupyterLab runs chapter notebooks the way a learner does.

nbval runs the notebooks in a bare kernel; this test goes through JupyterLab's own front
end instead: headless Chromium (driven by Playwright) opens a notebook, clicks Run -> Run All
Cells, and reads the result off the page. It catches what nbval cannot see: a notebook that
fails to open or run in JupyterLab, error outputs as JupyterLab renders them, and ipywidgets
that do not come alive (the attention explorer of chapter 3 must redraw when a control changes).

Nothing here touches the repository's own notebooks (JupyterLab autosaves): the notebooks are
copied, with their stored outputs stripped, into a temporary folder laid out like a clone.
Without Playwright or a Chromium the test is skipped, saying what to install.
"""

import contextlib
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
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the `browser` fixture skips every test, saying what to install
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
CH02 = "ch02_text_data/ch02_text_data.ipynb"
CH03 = "ch03_attention/ch03_attention.ipynb"

INSTALL_PLAYWRIGHT = "`pip install -r requirements-dev.txt` (or `pip install playwright`)"
INSTALL_CHROMIUM = "`apt-get install chromium` on Debian/Ubuntu, or `python -m playwright install chromium`"

# Every wait is bounded. Measured on a busy 2-core CPU in fast mode: JupyterLab starts in ~10 s,
# chapter 2 opens and runs in ~25 s, chapter 3 (with the widget check) in ~35 s. The limits
# leave room for a slower machine and still end a hung run within minutes.
SERVER_START_S = 90
PAGE_LOAD_S = 60  # JupyterLab's front end loads and the notebook's kernel becomes idle
RUN_ALL_S = {CH02: 180, CH03: 300}
WIDGET_S = 30  # the explorer's image redraws after a control changes
SHUTDOWN_S = 15

# The JupyterLab settings the test relies on (written as user settings in the temporary folder).
LAB_SETTINGS = {
    # Every cell in the DOM, so the test sees all prompts and outputs without scrolling.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # No "receive Jupyter news?" toast or update check covering the page (and no network).
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

CELL_SELECTOR = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"  # the open notebook's cells

# The state of every cell of the notebook on screen, read off the page in one go: its index in
# the notebook, whether it is a code cell, its prompt ("[3]:", "[*]:", "[ ]:") and the first
# line of its source.
CELLS_JS = """() => {
    const cells = [...document.querySelectorAll('CELL_SELECTOR')];
    if (!cells.length) return null;
    return cells.map((cell, index) => ({
        index,
        code: cell.classList.contains('jp-CodeCell'),
        prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
        source: (cell.querySelector('.cm-content')?.innerText || '').split('\\n')[0],
    }));
}""".replace("CELL_SELECTOR", CELL_SELECTOR)

# The outputs of type error (mime type application/vnd.jupyter.error), with the text the page
# shows for each. The page alone cannot tell them apart: JupyterLab renders an error's traceback
# with the same stderr renderer as any warning, so the notebook's model says which is which
# (window.jupyterapp: the server runs with expose_app_in_browser).
ERRORS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets.flatMap((cell, index) => {
    if (cell.model.type !== 'code') return [];
    const outputs = cell.model.outputs, found = [];
    for (let i = 0; i < outputs.length; i++) {
        const output = outputs.get(i);
        if (output.type === 'error' || 'application/vnd.jupyter.error' in output.data) {
            const {ename, evalue} = output.toJSON();
            found.push({index, ename, evalue, shown: cell.outputArea.widgets[i]?.node.innerText || ''});
        }
    }
    return found;
})"""

# The notebook's kernel as JupyterLab's front end sees it: "idle/connected" once it can run
# cells. (The toolbar's indicator is no proof: it can read "idle" before any kernel exists.)
KERNEL_JS = """() => {
    const kernel = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;
    return kernel ? `${kernel.status}/${kernel.connectionStatus}` : null;
}"""

# Run All has finished: no cell is queued or running ("[*]:"), at least one cell ran, and the
# kernel is idle again. (After an error JupyterLab stops, leaving later cells unrun: done too.)
RUN_FINISHED_JS = f"""() => {{
    const cells = ({CELLS_JS})();
    if (!cells || ({KERNEL_JS})() !== 'idle/connected') return false;
    const prompts = cells.filter((cell) => cell.code).map((cell) => cell.prompt);
    return !prompts.includes('[*]:') && prompts.some((prompt) => /^\\[\\d+\\]:$/.test(prompt));
}}"""


# Every image in the open notebook's outputs, and whether the browser could decode it.
IMAGES_JS = """() => [...document.querySelectorAll('CELL_SELECTOR .jp-OutputArea-output img')].map(
    (img) => ({alt: img.alt, loaded: img.complete && img.naturalWidth > 0}))""".replace("CELL_SELECTOR", CELL_SELECTOR)
SHOW_DIAGRAM = re.compile(r"""show_diagram\(\s*["']([\w-]+)["']\s*\)""")


# ---------------------------------------------------------------- the browser


def launch_chromium(playwright):
    """The system's Chromium if there is one, else Playwright's own download; None if neither."""
    system = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        if system:
            return playwright.chromium.launch(executable_path=system, headless=True)
        return playwright.chromium.launch(headless=True)  # fails when nothing was downloaded
    except PlaywrightError as error:
        if system or "Executable doesn't exist" not in str(error):
            raise  # a Chromium is there but does not start: that is a failure, not a skip
        return None


def skip_or_fail(reason):
    """A learner without a browser gets a skip that says what to install; CI (CI=true) must run the test."""
    if os.environ.get("CI", "").lower() in {"1", "true"}:
        pytest.fail(f"CI must run the browser test, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        skip_or_fail(f"Playwright for Python is not installed: {INSTALL_PLAYWRIGHT}, then {INSTALL_CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        if chromium is None:
            skip_or_fail(f"no Chromium for Playwright found: {INSTALL_CHROMIUM}")
        try:
            yield chromium
        finally:
            chromium.close()


# ---------------------------------------------------------------- JupyterLab


@dataclass
class Lab:
    url: str
    token: str
    root: Path  # JupyterLab's root folder: a copy of the course laid out like a clone
    log: Path
    process: subprocess.Popen

    def api(self, path, method="GET"):
        request = urllib.request.Request(f"{self.url}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()

    def log_tail(self, lines=40):
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def copy_course(root):
    """The notebooks under test and `shared/`, at the same places as in a clone.

    Stored outputs and execution counts are stripped, so whatever the page shows afterwards
    comes from this run (and JupyterLab's autosave cannot touch the repository's files).
    """
    for name in (CH02, CH03):
        notebook = nbformat.read(ROOT / name, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        notebook.metadata.pop("widgets", None)  # stored widget state would render stale widgets
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, root / name)
    # The setup cell puts the parent of the notebook's folder on sys.path when it finds shared/ there.
    shutil.copytree(ROOT / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))


def write_settings(settings_dir):
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_environment(home):
    """os.environ (CI's offline variables included), with fast mode and Jupyter's own state in `home`."""
    env = dict(os.environ)
    # Fast mode always: this test is about JupyterLab, and full-size runs take hours on a CPU.
    env["COURSE_FAST"] = "1"
    for variable, folder in {
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_CONFIG_DIR": "config",  # no user config (extensions, passwords) leaks in
        "JUPYTER_DATA_DIR": "data",
        "IPYTHONDIR": "ipython",  # no startup scripts from the user's IPython profile
    }.items():
        env[variable] = str(home / folder)
        (home / folder).mkdir(parents=True, exist_ok=True)
    return env


def wait_for_server(lab):
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        with contextlib.suppress(OSError):  # refused until the server listens
            lab.api("/api/status")
            return
        time.sleep(0.25)
    raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{lab.log_tail()}")


def stop_server(lab):
    """Shut the server down, forcing its process group only if it does not exit by itself.

    Kernels run in sessions of their own (jupyter_client starts them so): the shutdown request
    stops them, and a kernel whose server was killed exits on its own (ipykernel watches its parent).
    """
    with contextlib.suppress(OSError):
        lab.api("/api/shutdown", method="POST")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            lab.process.wait(timeout=SHUTDOWN_S)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.process.pid, sig)
    lab.process.wait(timeout=SHUTDOWN_S)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "course"
    copy_course(root)
    env = lab_environment(home / "jupyter")
    write_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    port, token = free_port(), secrets.token_hex(24)
    log = home / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser"]
    command += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    command += [
        "--LabApp.extension_manager=readonly",  # no extension listing fetched from PyPI
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the notebook's model (see ERRORS_JS)
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root in a throwaway container
    with log.open("wb") as log_file:
        # A session of its own: teardown can signal its whole process group without touching pytest's.
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Lab(f"http://127.0.0.1:{port}", token, root, log, process)
    try:
        wait_for_server(server)
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def page(browser, lab):
    """A fresh browser context per test (no shared cookies or storage); its kernels stop afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()
        shut_down_kernels(lab)  # an idle kernel still holds hundreds of MB; the next test starts its own


def shut_down_kernels(lab):
    with contextlib.suppress(OSError):
        for kernel in json.loads(lab.api("/api/kernels")):
            lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")


@contextlib.contextmanager
def diagnosed(page, lab, tmp_path):
    """On any failure: a screenshot in tmp_path, and its path plus JupyterLab's log in the message."""
    try:
        yield
        return
    except (AssertionError, PlaywrightError) as failure:
        message = str(failure)
    screenshot = tmp_path / "failure.png"
    try:
        page.screenshot(path=screenshot)
        where = f"screenshot: {screenshot}"
    except PlaywrightError as error:
        where = f"no screenshot ({error})"
    report = f"{message}\n\n{where}\n\nJupyterLab log (tail):\n{lab.log_tail()}"
    # `from None`: the original error is already in the report; its traceback would only repeat it.
    raise pytest.fail.Exception(report, pytrace=False) from None


# ---------------------------------------------------------------- driving the notebook


def open_notebook(page, lab, name):
    # ?reset: start from an empty workspace, so no earlier layout (other open notebooks) interferes.
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}", timeout=PAGE_LOAD_S * 1000)
    try:
        page.wait_for_function(f"() => ({KERNEL_JS})() === 'idle/connected'", timeout=PAGE_LOAD_S * 1000)
    except PlaywrightTimeoutError:
        state = page.evaluate(KERNEL_JS)
        raise AssertionError(f"{name}: no idle kernel within {PAGE_LOAD_S} s (kernel: {state})") from None
    shown = page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path")
    assert shown == name, f"JupyterLab shows {shown!r}, not {name!r}"


def run_all_cells(page, name):
    """Run -> Run All Cells from the menu bar, as a learner would, and wait until it has finished."""
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    try:
        page.wait_for_function(RUN_FINISHED_JS, timeout=RUN_ALL_S[name] * 1000, polling=500)
    except PlaywrightTimeoutError:
        pending = [c["index"] for c in page.evaluate(CELLS_JS) or [] if c["code"] and c["prompt"] == "[*]:"]
        raise AssertionError(
            f"{name}: Run All did not finish within {RUN_ALL_S[name]} s; cells still queued or running: {pending}"
        ) from None


def check_ran_cleanly(page, lab, name):
    """Every code cell ran, in order, in one fresh kernel, and no cell shows an error output."""
    cells = page.evaluate(CELLS_JS)
    expected = nbformat.read(lab.root / name, as_version=4).cells
    assert len(cells) == len(expected), f"{name}: {len(cells)} cells on the page, {len(expected)} in the notebook"

    found = page.evaluate(ERRORS_JS)
    if found:  # the failure screenshot then shows the first failing cell
        page.locator(CELL_SELECTOR).nth(found[0]["index"]).scroll_into_view_if_needed()
    errors = [
        f"cell {e['index']} ({cells[e['index']]['source']!r}) shows {e['ename']}: {e['evalue']}\n"
        + last_lines(e["shown"])
        for e in found
    ]
    if errors:  # raised, not asserted: pytest would append the whole list again
        raise AssertionError(f"{name}: {len(errors)} error output(s)\n\n" + "\n\n".join(errors))

    prompts = [(cell["index"], cell["prompt"]) for cell in cells if cell["code"]]
    unrun = [f"cell {index} shows {prompt!r}" for index, prompt in prompts if not re.fullmatch(r"\[\d+\]:", prompt)]
    assert not unrun, f"{name}: not every code cell ran: " + "; ".join(unrun)
    # A fresh kernel and one Run All: execution counts 1..N, top to bottom.
    assert [prompt for _, prompt in prompts] == [f"[{n}]:" for n in range(1, len(prompts) + 1)], prompts


def check_diagrams_render(page, lab, name):
    """Every course diagram the notebook shows is an image the browser decoded (none broken)."""
    shown = [n for cell in nbformat.read(lab.root / name, as_version=4).cells if cell.cell_type == "code"
             for n in SHOW_DIAGRAM.findall(cell.source)]
    images = page.evaluate(IMAGES_JS)
    broken = [image["alt"][:60] or "(no alt)" for image in images if not image["loaded"]]
    assert not broken, f"{name}: images the browser could not show: {broken}"
    assert len(images) >= len(shown), f"{name}: {len(shown)} diagrams in the notebook, {len(images)} images on the page"


def last_lines(text, count=12):
    return "\n".join(text.strip().splitlines()[-count:])


# ---------------------------------------------------------------- the tests


def test_ch02_runs_in_jupyterlab_without_errors(page, lab, tmp_path):
    with diagnosed(page, lab, tmp_path):
        open_notebook(page, lab, CH02)
        run_all_cells(page, CH02)
        check_ran_cleanly(page, lab, CH02)
        check_diagrams_render(page, lab, CH02)


def test_ch03_runs_and_its_attention_explorer_redraws(page, lab, tmp_path):
    with diagnosed(page, lab, tmp_path):
        open_notebook(page, lab, CH03)
        run_all_cells(page, CH03)
        check_ran_cleanly(page, lab, CH03)

        # The explorer is a live ipywidgets view (not its text fallback "VBox(...)" nor "Error
        # displaying widget"): three dropdowns (view, head, query) and an image, inside one output.
        explorer = page.locator(".jp-OutputArea-output", has=page.locator(".widget-dropdown", has_text="query"))
        expect(explorer, "the attention explorer widget did not render").to_have_count(1, timeout=WIDGET_S * 1000)
        query = explorer.locator(".widget-dropdown", has_text="query").locator("select")
        expect(explorer.locator(".widget-dropdown", has_text="head").locator("select")).to_be_visible()
        view = explorer.locator(".widget-dropdown", has_text="view").locator("select")
        expect(view).to_have_value("causal mask")
        image = explorer.locator("img")
        expect(image).to_have_count(1)
        before = wait_for_picture(page, image)

        # Another query token: the kernel redraws the figure and the widget shows the new PNG.
        options = query.locator("option").count()
        assert options > 1, f"the query dropdown has {options} option(s)"
        chosen = (query.evaluate("select => select.selectedIndex") + 1) % options
        query.select_option(index=chosen)
        expect(image, "the image did not redraw after the query changed").not_to_have_attribute(
            "src", before, timeout=WIDGET_S * 1000
        )
        wait_for_picture(page, image)


def wait_for_picture(page, image):
    """Wait until the image shows a decoded picture (not a broken or empty src); return its src."""
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=WIDGET_S * 1000
    )
    return image.get_attribute("src")
