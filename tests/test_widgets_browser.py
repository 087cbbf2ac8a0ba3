"""Every widget of diffgan_lib.course.widgets (and widgets_sampling, widgets_guidance) renders in a real JupyterLab and redraws when a slider moves.

Headless Chromium driven by Playwright (``executable_path="/usr/bin/chromium"``; no browser is ever
downloaded). For each widget: write a one-cell notebook, open it in JupyterLab, Run All, press
ArrowRight on every slider handle in turn, and check that the figure (the <img> in the widget's
Output) changes each time. Screenshots before and after go to a temporary folder, or to
``$DIFFGAN_SCREENSHOT_DIR`` when it is set. Skips cleanly without Chromium or Playwright.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# One notebook cell per widget: it must display the widget as its last expression.
SNIPPETS = {
    "schedule_explorer": ("from diffgan_lib import PhantomDataset\n"
                          "from diffgan_lib.course.widgets import schedule_explorer\n"
                          "schedule_explorer(PhantomDataset(n=8, image_size=64, seed=0)[4])"),
    "d_loss_explorer": "from diffgan_lib.course.widgets import d_loss_explorer\nd_loss_explorer()",
    "trajectory_scrubber": ("from diffgan_lib import load_checkpoint\n"
                            "from diffgan_lib.course import PRETRAINED\n"
                            "from diffgan_lib.course.widgets_sampling import record_trajectory, trajectory_scrubber\n"
                            "G, _, sched = load_checkpoint(PRETRAINED, device='cpu')\n"
                            "trajectory_scrubber(record_trajectory(G, sched, ts=[*range(0, 1000, 100), 999], "
                            "sampler='ddim', steps=100, clip_x0=True));"),
    "guidance_slider": ("from diffgan_lib import load_checkpoint\n"
                        "from diffgan_lib.course import PRETRAINED_COND_PHANTOMS\n"
                        "from diffgan_lib.course.widgets_guidance import guidance_frames, guidance_slider\n"
                        "G, _, sched = m = load_checkpoint(PRETRAINED_COND_PHANTOMS, device='cpu')\n"
                        "guidance_slider(guidance_frames(G, sched, [2, 4], n_per_label=2, steps=5, "
                        "class_names=m.config.class_names))"),
}

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                               reason="playwright is not installed (pip install playwright)")


def test_every_widget_has_a_snippet():
    from diffgan_lib.course import widgets
    from diffgan_lib.course import widgets_guidance, widgets_sampling
    exported = widgets.__all__ + widgets_sampling.__all__ + widgets_guidance.__all__
    names = {n for n in exported if not n.startswith(("draw_", "record_", "guidance_frames"))
             and not n.endswith("_static")}
    assert names == set(SNIPPETS)
    assert all(f"{n}_static" in exported for n in names)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a random port and token, serving a temporary folder of notebooks."""
    root = tmp_path_factory.mktemp("lab")
    for name, src in SNIPPETS.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / f"{name}.ipynb")
    settings = root / "_settings"   # throw-away settings: no windowing (off-screen outputs stay in the DOM)
    for plugin, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                          ("apputils-extension/notification",
                           {"fetchNews": "false", "checkForUpdates": False})):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / "_ws"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = open(root / "_server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(root / '_server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not start within 60 s")
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("DIFFGAN_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _figure_src(page) -> str | None:
    img = page.locator(".widget-output img")
    return img.first.get_attribute("src") if img.count() else None


def _wait_for_new_figure(page, old: str | None, timeout_s: float) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        src = _figure_src(page)
        if src and src != old:
            return src
        page.wait_for_timeout(250)
    raise AssertionError(f"the widget's figure did not {'change' if old else 'appear'} within {timeout_s} s")


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_widget_renders_and_slider_redraws(name, lab, shots, tmp_path):
    url, token = lab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1600})
        try:
            page = browser.new_page()
            # a workspace of its own, reset: only this notebook is open
            page.goto(f"{url}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={token}")
            page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            src = _wait_for_new_figure(page, None, timeout_s=120)
            widget = page.locator(".jp-Notebook .jp-Cell-outputArea").first
            widget.screenshot(path=str(shots / f"{name}_before.png"))
            before_png = (shots / f"{name}_before.png").read_bytes()
            handles = page.locator(".widget-slider .noUi-handle")
            assert handles.count() >= 1, "the widget has no slider"
            for i in range(handles.count()):
                handles.nth(i).focus()
                page.keyboard.press("ArrowRight")
                src = _wait_for_new_figure(page, src, timeout_s=60)
            page.wait_for_timeout(500)
            widget.screenshot(path=str(shots / f"{name}_after.png"))
            assert (shots / f"{name}_after.png").read_bytes() != before_png
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.first.inner_text()
        finally:
            browser.close()
    print(f"screenshots: {shots}")

