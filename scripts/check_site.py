"""Check a built course site (``bash scripts/site.sh OUT_DIR``) as a reader would see it.

Two checks, both must pass:

1. **Links** (pure Python, no browser): every relative ``href``/``src`` of every HTML page names a
   file of the site, and every ``#fragment`` an ``id`` of its page.
2. **Browser**: the site is served on 127.0.0.1 and every page is opened in headless Chromium
   (Debian's ``chromium``, driven by Playwright). A page fails on a console error, an uncaught
   exception, a request answered >= 400, or an image that did not load or is blank (decoded on a
   canvas: all pixels one colour). Requests off 127.0.0.1 are blocked (the check runs offline);
   they are listed, and their own load errors are not counted. The explorer's static figure must
   be there: in notebook 05, the output of the cell that calls ``attention_explorer(`` holds a
   non-blank image. Screenshots of a few pages are saved.

    python scripts/check_site.py OUT_DIR [--screenshots DIR] [--links-only]

Exit status 0 when everything passes, 1 with every failure listed otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
EXPLORER_PAGE = "notebooks/05_*.html"
EXPLORER_CALL = "attention_explorer("
SCREENSHOT_PAGES = (
    "index.html",
    "teacher_guide.html",
    "notebooks/05_*.html",
    "notebooks/03_*.html",
    "api/basam_lite.masks.html",
)


# ---------------------------------------------------------------- links, without a browser


class _Page(HTMLParser):
    """The link targets (``href``, ``src``) and anchors (``id``, ``<a name>``) of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name") if tag in ("a",) else ("id",):
            if a.get(key):
                self.ids.add(a[key])  # type: ignore[arg-type]
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") in ("preconnect",)):
                self.urls.append(a[key])  # type: ignore[arg-type]


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check_links(out: Path) -> list[str]:
    """Every relative link of every page resolves to a file (and its #fragment to an id)."""
    failures = []
    parsed: dict[Path, _Page] = {}
    pages = [
        p
        for p in sorted(out.rglob("*.html"))
        if p.relative_to(out).parts[0] not in ("_static", "_sources")
    ]  # theme templates
    for path in pages:
        parsed[path] = _parse(path)
    for path in pages:
        for url in parsed[path].urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = path.relative_to(out).as_posix()
            if not target.is_file():
                failures.append(f"{where}: broken link {url}")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    failures.append(f"{where}: {url}: no id {parts.fragment!r} in the target")
    return failures


# ---------------------------------------------------------------- in the browser

_IMAGES_JS = """
async () => {
  const out = [];
  for (const img of Array.from(document.images)) {
    if (!img.complete) { await new Promise(r => { img.onload = r; img.onerror = r; }); }
    const r = {src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0,
               w: img.naturalWidth, h: img.naturalHeight, colours: 0};
    if (r.loaded && new URL(r.src, location.href).origin === location.origin) {
      const scale = Math.min(1, 400 / Math.max(r.w, r.h));
      const c = document.createElement("canvas");
      c.width = Math.max(1, Math.round(r.w * scale));
      c.height = Math.max(1, Math.round(r.h * scale));
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0, c.width, c.height);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let i = 0; i < d.length && seen.size < 3; i += 4) {
        seen.add(d[i] << 24 | d[i + 1] << 16 | d[i + 2] << 8 | d[i + 3]);
      }
      r.colours = seen.size;
    }
    out.push(r);
  }
  return out;
}
"""

_EXPLORER_JS = """
(call) => {
  const cells = Array.from(document.querySelectorAll("div.cell"));
  const cell = cells.find(c => { const i = c.querySelector(".cell_input");
                                 return i && i.textContent.includes(call); });
  if (!cell) return null;
  return Array.from(cell.querySelectorAll(".cell_output img")).map(i => i.currentSrc || i.src);
}
"""


def _serve(out: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _first(out: Path, pattern: str) -> str | None:
    found = sorted(out.glob(pattern))
    return found[0].relative_to(out).as_posix() if found else None


def check_in_browser(out: Path, shots: Path | None) -> tuple[list[str], dict[str, int]]:
    """Open every page in headless Chromium; returns the failures and counts."""
    from playwright.sync_api import sync_playwright

    failures: list[str] = []
    counts = {"pages": 0, "images": 0, "external requests blocked": 0}
    explorer = _first(out, EXPLORER_PAGE)
    if explorer is None:
        failures.append(f"no page matches {EXPLORER_PAGE} (the explorer's notebook)")
    shot_pages = {p for p in (_first(out, s) for s in SCREENSHOT_PAGES) if p}
    pages = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*.html")
        if not p.relative_to(out).as_posix().startswith(("_static/", "_sources/"))
    )
    server, base = _serve(out)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            blocked: set[str] = set()

            def route(r) -> None:
                if r.request.url.startswith(base):
                    r.continue_()
                else:
                    blocked.add(r.request.url)
                    r.abort()

            context.route("**/*", route)
            for rel in pages:
                page = context.new_page()
                problems: list[str] = []
                page.on("console", lambda m, p=problems: p.append(m) if m.type == "error" else None)
                errors: list[str] = []
                page.on("pageerror", lambda e, p=errors: p.append(str(e)))
                bad: list[str] = []
                page.on(
                    "response",
                    lambda r, b=bad: b.append(f"{r.status} {r.url}") if r.status >= 400 else None,
                )
                response = page.goto(base + rel, wait_until="load", timeout=60_000)
                page.wait_for_timeout(300)  # let MathJax and the theme's scripts finish
                counts["pages"] += 1
                if response is None or response.status != 200:
                    failures.append(f"{rel}: answered {response and response.status}")
                for m in problems:
                    url = (m.location or {}).get("url", "")
                    if url in blocked or (not url.startswith(base) and url):
                        continue  # a blocked off-site request's own load error
                    failures.append(f"{rel}: console error: {m.text}")
                failures += [f"{rel}: uncaught exception: {e}" for e in errors]
                failures += [f"{rel}: request failed: {b}" for b in bad]
                for img in page.evaluate(_IMAGES_JS):
                    if not img["src"].startswith(base):
                        continue  # off-site (a badge): blocked here, listed below
                    counts["images"] += 1
                    name = img["src"][len(base) :]
                    if not img["loaded"]:
                        failures.append(f"{rel}: image did not load: {name}")
                    elif img["colours"] < 2:
                        failures.append(f"{rel}: blank image (one colour): {name}")
                if rel == explorer:
                    srcs = page.evaluate(_EXPLORER_JS, EXPLORER_CALL)
                    if srcs is None:
                        failures.append(f"{rel}: no cell calls {EXPLORER_CALL}")
                    elif not srcs:
                        failures.append(f"{rel}: the explorer's cell shows no static figure")
                    else:
                        counts["explorer figures"] = len(srcs)
                        cell = page.locator("div.cell", has_text=EXPLORER_CALL).first
                        if shots is not None:
                            cell.screenshot(path=str(shots / "explorer-cell.png"))
                if shots is not None and rel in shot_pages:
                    name = rel.replace("/", "_").removesuffix(".html") + ".png"
                    page.screenshot(path=str(shots / name), full_page=False)
                    figures = page.locator(".cell_output img")
                    if figures.count():  # and the first figure of a notebook, in view
                        figures.first.scroll_into_view_if_needed()
                        page.screenshot(path=str(shots / name.replace(".png", "-figure.png")))
                page.close()
            counts["external requests blocked"] = len(blocked)
            browser.close()
    finally:
        server.shutdown()
    return failures, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the built site (OUT_DIR of scripts/site.sh)")
    default_shots = os.environ.get("CI_ARTIFACTS")
    parser.add_argument(
        "--screenshots",
        type=Path,
        default=None,
        help="folder for screenshots (default $CI_ARTIFACTS/site-screenshots, "
        "else OUT_DIR/../site-screenshots)",
    )
    parser.add_argument("--links-only", action="store_true", help="skip the browser")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if not (out / "index.html").is_file():
        print(
            f"error: {args.out}/index.html not found; build it with bash scripts/site.sh "
            f"{args.out}",
            file=sys.stderr,
        )
        return 2
    failures = check_links(out)
    print(f"links: {len(failures)} broken")
    if not args.links_only:
        shots = args.screenshots or (
            Path(default_shots) / "site-screenshots"
            if default_shots
            else out.parent / "site-screenshots"
        )
        shots.mkdir(parents=True, exist_ok=True)
        more, counts = check_in_browser(out, shots)
        failures += more
        print(
            "browser: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f"; screenshots in {shots}"
        )
    for f in failures:
        print(f"FAIL {f}")
    print("site check: " + ("ok" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
