"""Check notebook 05's attention explorer in a real browser: JupyterLab driven by headless Chromium.

The unit tests click the explorer with a synthetic matplotlib event; this script clicks it as a
learner does. It copies the notebook to a temporary folder (the project's copy is never touched),
appends one cell that prints the explorer's state read back from the kernel, starts JupyterLab on
127.0.0.1 (a free port, a token, no browser of its own; the kernel imports ``basam_lite`` from this
checkout), opens the notebook in Chromium (Debian's ``chromium``, driven by Playwright; ``CHROMIUM``
names another binary), runs all cells from the Run menu and then checks:

1. **click**: a click on a map, at a point computed from the canvas's size and the axes' extents
   (read back from the kernel), makes the token under it the query, in the query list and in the
   kernel; done once on the first panel and once on the last;
2. **in place**: after each update the explorer's output holds one ipympl figure and no static
   image, the figure is the same Python object, and its pixels changed;
3. **preset**: choosing a preset in the query list still selects it, at its own token.

Screenshots of the explorer's cell before and after each step go to ``--out``. Requests off
127.0.0.1 are blocked. JupyterLab and the browser are stopped at the end, also on failure.

    python scripts/check_explorer.py [--out DIR] [--timeout S] [--notebook PATH]

Prints one line per check; exit status 0 when all pass, 1 with one ``FAIL`` line otherwise,
2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_site import CHROMIUM, CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_attention_maps.ipynb"
EXPLORER_CALL = "attention_explorer("
PRESET = "flag"  # one of notebook 05's named query points
STATE_MARK = "EXPLORER_STATE "
STATE_CELL = f"""# Added by scripts/check_explorer.py (temporary copy only): the explorer's state.
import json as _json

import basam_lite as _bl

_e = [v for v in Out.values() if hasattr(v, "explorer")][-1].explorer
_s = _e.settings()
for _im in _e.images:
    _im.axes.apply_aspect()
print({STATE_MARK!r} + _json.dumps({{
    "module": _bl.__file__,
    "figure_id": id(_e.figure),
    "query": _s["query"],
    "side": _s["side"],
    "patch": _e.atlas.patch,
    "token": list(_e.atlas.token(_s["side"], _s["query"])),
    "queries": _e.atlas.queries,
    "title": _e.figure._suptitle.get_text() if _e.figure._suptitle else "",
    "size_px": [_e.figure.bbox.width, _e.figure.bbox.height],
    "maps": [{{"bbox": list(_im.axes.bbox.extents), "xlim": list(_im.axes.get_xlim()),
               "ylim": list(_im.axes.get_ylim())}} for _im in _e.images],
}}))
"""

_CANVAS_JS = """
(cell) => {
  const figs = cell.querySelectorAll(".jupyter-matplotlib-figure");
  const imgs = cell.querySelectorAll(".jp-OutputArea-output img");
  const c = cell.querySelector(".jupyter-matplotlib-figure canvas");
  const out = {figures: figs.length, images: imgs.length, hash: 0, colours: 0, w: 0, h: 0};
  if (!c || !c.width) return out;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261; const seen = new Set();
  for (let i = 0; i < d.length; i += 4) {
    const v = d[i] << 16 | d[i + 1] << 8 | d[i + 2];
    h = Math.imul(h ^ v, 16777619) >>> 0;
    if (seen.size < 50) seen.add(v);
  }
  out.hash = h; out.colours = seen.size; out.w = c.width; out.h = c.height;
  return out;
}
"""


class CheckFailed(Exception):
    """One check failed; the message is the one line printed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, timeout: float, poll, interval: float = 0.5):
    """``poll()`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def prepare(notebook: Path, work: Path) -> Path:
    """A copy of ``notebook`` in ``work`` with the state cell appended; JupyterLab's user
    settings there (no news or update checks, no toasts over the page)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    if not any(EXPLORER_CALL in "".join(c["source"]) for c in nb["cells"]):
        raise CheckFailed(f"{notebook} has no cell that calls {EXPLORER_CALL}")
    nb["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": STATE_CELL.splitlines(keepends=True),
        }
    )
    copy = work / "nb" / notebook.name
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    settings = work / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )
    return copy


def start_lab(work: Path, notebook_dir: Path, port: int, token: str, log) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    for var, sub in (
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_CONFIG_DIR", "config"),
    ):
        env[var] = str(work / sub)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebook_dir}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return subprocess.Popen(
        cmd, cwd=notebook_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_lab(proc: subprocess.Popen) -> None:
    """SIGTERM to JupyterLab's process group (it and its kernels), SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _lab_up(url: str, proc: subprocess.Popen, log_path: Path):
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        raise CheckFailed(f"JupyterLab exited with {proc.returncode}: {' '.join(tail)}")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def click_point(state: dict, panel: int, token: tuple[int, int], css: dict) -> tuple[float, float]:
    """Where to click on the canvas (CSS px from its top left) to hit ``token`` (row, col) of map
    ``panel``: a point inside the token, off its centre (so that rounding to the nearest token is
    exercised), mapped through the axes' data limits and box (display px, origin bottom left)."""
    m = state["maps"][panel]
    p = state["patch"]
    x = (token[1] + 0.7) * p  # data coordinates (px of the resized image)
    y = (token[0] + 0.35) * p
    (x0, x1), (y0, y1) = m["xlim"], m["ylim"]
    bx0, by0, bx1, by1 = m["bbox"]
    dx = bx0 + (x - x0) / (x1 - x0) * (bx1 - bx0)
    dy = by0 + (y - y0) / (y1 - y0) * (by1 - by0)
    w, h = state["size_px"]
    return dx * css["width"] / w, (h - dy) * css["height"] / h


def token_at(state: dict, panel: int, pos: tuple[float, float], css: dict) -> tuple[int, int]:
    """The token (row, col) under canvas point ``pos`` (CSS px), computed from the geometry alone
    (the inverse of :func:`click_point`, floored to the patch grid)."""
    m = state["maps"][panel]
    w, h = state["size_px"]
    dx, dy = pos[0] * w / css["width"], h - pos[1] * h / css["height"]
    (x0, x1), (y0, y1) = m["xlim"], m["ylim"]
    bx0, by0, bx1, by1 = m["bbox"]
    x = x0 + (dx - bx0) / (bx1 - bx0) * (x1 - x0)
    y = y0 + (dy - by0) / (by1 - by0) * (y1 - y0)
    g = state["side"] // state["patch"]
    return min(g - 1, max(0, math.floor(y / state["patch"]))), min(
        g - 1, max(0, math.floor(x / state["patch"]))
    )


class Session:
    """The notebook open in JupyterLab in one Chromium page."""

    def __init__(self, page, timeout: float, shots: Path) -> None:
        self.page = page
        self.timeout = timeout
        self.shots = shots

    def cell(self, text: str):
        return self.page.locator(
            ".jp-CodeCell", has=self.page.locator(".jp-InputArea", has_text=text)
        ).last

    @property
    def explorer_cell(self):
        return self.cell(EXPLORER_CALL)

    @property
    def state_cell(self):
        return self.cell("scripts/check_explorer.py")

    def check_errors(self) -> None:
        err = self.page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.'
            'stderr"]:has-text("Traceback"), .jp-RenderedText[data-mime-type'
            '="application/vnd.jupyter.error"]'
        )
        if err.count():
            lines = [s for s in err.first.inner_text().splitlines() if s.strip()]
            raise CheckFailed(f"a cell raised: {lines[-1] if lines else '?'}")

    def state(self, previous: dict | None = None, timeout: float | None = None) -> dict:
        """The state cell's output (re-run it first when ``previous`` is given)."""
        cell = self.state_cell
        out = cell.locator(".jp-OutputArea-output")
        if previous is not None:
            cell.locator(".jp-InputArea-editor").click()
            self.page.keyboard.press("Control+Enter")  # run it in place
            _wait(
                "the state cell to run again",
                self.timeout,
                lambda: (
                    self._prompt(cell) not in (previous["_prompt"], "[*]:")
                    and self._state_text(out)
                ),
            )
        text = _wait(
            "the state cell's output",
            timeout or self.timeout,
            lambda: self.check_errors() or self._state_text(out),
        )
        state = json.loads(text)
        state["_prompt"] = self._prompt(cell)
        return state

    @staticmethod
    def _state_text(out) -> str | None:
        for t in out.all_inner_texts():
            if STATE_MARK in t:
                return t.split(STATE_MARK, 1)[1].strip()
        return None

    @staticmethod
    def _prompt(cell) -> str:
        return cell.locator(".jp-InputPrompt").inner_text().strip()

    def canvas(self) -> dict:
        return self.explorer_cell.evaluate(_CANVAS_JS)

    def canvas_box(self) -> dict:
        box = self.explorer_cell.locator(".jupyter-matplotlib-figure canvas").last.bounding_box()
        if box is None:
            raise CheckFailed("the explorer's canvas is not displayed")
        return box

    def query_select(self):
        return self.explorer_cell.locator(
            ".widget-dropdown", has=self.page.locator("label", has_text="query")
        ).locator("select")

    def query_text(self) -> str:
        """The query list's shown choice (ipywidgets draws spaces as no-break spaces)."""
        text = self.query_select().evaluate(
            "e => e.selectedIndex < 0 ? '' : e.options[e.selectedIndex].text"
        )
        return text.replace("\xa0", " ")

    def wait_redraw(self, before: dict, what: str) -> dict:
        """Wait for the canvas to show a new image that then stays for a second."""

        def changed():
            now = self.canvas()
            return now if now["hash"] and now["hash"] != before["hash"] else None

        now = _wait(f"the figure to redraw after {what}", self.timeout, changed)
        while True:
            time.sleep(1.0)
            again = self.canvas()
            if again["hash"] == now["hash"]:
                return again
            now = again

    def shot(self, name: str) -> None:
        self.explorer_cell.scroll_into_view_if_needed()
        self.explorer_cell.screenshot(path=str(self.shots / name))


def in_place(canvas: dict, state: dict, first: dict, what: str) -> str:
    if canvas["figures"] != 1 or canvas["images"]:
        raise CheckFailed(
            f"after {what} the explorer's output holds {canvas['figures']} "
            f"interactive figures and {canvas['images']} static images (want 1, 0)"
        )
    if state["figure_id"] != first["figure_id"]:
        raise CheckFailed(f"after {what} the explorer draws on a new figure object")
    return "1 figure, same object, pixels changed"


def run_check(args: argparse.Namespace, work: Path, shots: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    lines: list[str] = []
    copy = prepare(args.notebook, work)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}/"
    log_path = work / "jupyterlab.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        lab = start_lab(work, copy.parent, port, token, log)
        try:
            _wait(
                "JupyterLab to answer",
                args.timeout,
                lambda: _lab_up(f"{base}api/status?token={token}", lab, log_path),
            )
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                try:
                    lines += drive(browser, base, token, copy.name, args, shots, t0)
                finally:
                    browser.close()
        finally:
            stop_lab(lab)
    return lines


def drive(browser, base: str, token: str, name: str, args, shots: Path, t0: float) -> list[str]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, device_scale_factor=1)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
    page = context.new_page()
    page.set_default_timeout(args.timeout * 1000)
    try:
        return steps(Session(page, args.timeout, shots), base, token, name, args, t0)
    except Exception:
        page.screenshot(path=str(shots / "failure.png"))
        raise
    finally:
        context.close()


def steps(s: Session, base: str, token: str, name: str, args, t0: float) -> list[str]:
    """Open, run all, click twice, choose a preset; one summary line per check."""
    lines = []
    page = s.page
    page.goto(f"{base}lab/tree/{name}?token={token}", wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible")
    # The kernel: started on its own, or (seen on a loaded machine) JupyterLab asks which one.
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    status = page.locator(".jp-StatusBar-Widget", has_text="| Idle")
    _wait(
        "the kernel to start",
        args.timeout,
        lambda: (
            status.count()
            or (
                dialog.count()
                and dialog.get_by_role("button", name="Select").click() is None
                and False
            )
        ),
    )
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    first = s.state(timeout=2 * args.timeout)  # every cell of the notebook runs first
    if not first["module"].startswith(str(ROOT)):
        raise CheckFailed(f"the kernel imported basam_lite from {first['module']}, not {ROOT}")
    s.explorer_cell.scroll_into_view_if_needed()
    start = _wait(
        "the explorer's canvas to be drawn",
        args.timeout,
        lambda: (c := s.canvas())["colours"] > 10 and c,
    )
    lines.append(
        f"run all: {time.monotonic() - t0:.0f} s from JupyterLab's start to the "
        f"explorer drawn; query {first['query']!r} at token {tuple(first['token'])}, "
        f"{len(first['maps'])} panels, {start['figures']} figure"
    )
    if start["figures"] != 1 or start["images"]:
        raise CheckFailed(
            f"the explorer's output holds {start['figures']} interactive figures "
            f"and {start['images']} static images (want 1, 0)"
        )
    s.shot("explorer-0-start.png")
    g = first["side"] // first["patch"]
    state, canvas = first, start
    for step, panel in ((1, 0), (2, len(first["maps"]) - 1)):
        r0, c0 = state["token"]
        target = ((r0 + g // 2) % g, (c0 + g // 3 + step) % g)  # away from the current query
        box = s.canvas_box()
        pos = click_point(state, panel, target, box)
        expected = token_at(state, panel, pos, box)
        t = time.monotonic()
        s.explorer_cell.locator(".jupyter-matplotlib-figure canvas").last.click(
            position={"x": pos[0], "y": pos[1]}
        )
        label = f"token {expected} @ {state['side']} px"
        _wait(
            f"the query list to show {label!r}",
            args.timeout,
            lambda lab=label: s.query_text() == lab,
        )
        canvas = s.wait_redraw(canvas, f"click {step}")
        took = time.monotonic() - t
        state = s.state(state)
        if tuple(state["token"]) != expected or f"token {expected}" not in state["title"]:
            raise CheckFailed(
                f"click {step} at canvas ({pos[0]:.0f}, {pos[1]:.0f}) px on panel "
                f"{panel} should select token {expected}; the kernel has "
                f"{state['query']!r} at {tuple(state['token'])}"
            )
        lines.append(
            f"click {step}: canvas ({pos[0]:.0f}, {pos[1]:.0f}) px on panel {panel} -> "
            f"token {expected}, as the geometry says; redrawn in {took:.1f} s"
        )
        lines.append(f"in place {step}: " + in_place(canvas, state, first, f"click {step}"))
        s.shot(f"explorer-{step}-click.png")
    t = time.monotonic()
    s.query_select().select_option(label=PRESET)
    canvas = s.wait_redraw(canvas, f"choosing the preset {PRESET!r}")
    took = time.monotonic() - t
    state = s.state(state)
    y, x = first["queries"][PRESET]
    want = (int(y * g), int(x * g))
    if state["query"] != PRESET or tuple(state["token"]) != want:
        raise CheckFailed(
            f"preset {PRESET!r} should be the query at token {want}; the kernel has "
            f"{state['query']!r} at {tuple(state['token'])}"
        )
    lines.append(
        f"preset: {PRESET!r} -> token {want}; redrawn in {took:.1f} s; "
        + in_place(canvas, state, first, "the preset")
    )
    s.shot("explorer-3-preset.png")
    s.check_errors()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the screenshots (default: a new temporary folder)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds any one wait may take, twice that for running all cells (default 300)",
    )
    parser.add_argument(
        "--notebook",
        type=Path,
        default=NOTEBOOK,
        help="the notebook holding the explorer (default notebook 05)",
    )
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        print(f"error: {args.notebook} not found", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(
            f"error: no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)",
            file=sys.stderr,
        )
        return 2
    shots = args.out or Path(tempfile.mkdtemp(prefix="explorer-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="check-explorer-"))
    t0 = time.monotonic()
    try:
        for line in run_check(args, work, shots):
            print(line, flush=True)
    except CheckFailed as e:
        if (work / "jupyterlab.log").is_file():
            shutil.copy(work / "jupyterlab.log", shots / "jupyterlab.log")
        print(f"FAIL {e} (screenshots in {shots})")
        return 1
    except Exception as e:  # a Playwright timeout, a page that went away: one line too
        if (work / "jupyterlab.log").is_file():
            shutil.copy(work / "jupyterlab.log", shots / "jupyterlab.log")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"FAIL {type(e).__name__}: {first} (screenshots in {shots})")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"explorer check: ok in {time.monotonic() - t0:.0f} s; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
