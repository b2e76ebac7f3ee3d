"""The weights cache against a small HTTP server on 127.0.0.1 that these tests start.

Every download here is a random-weight tiny SAM checkpoint served from a thread of this
process; an audit hook fails any test that opens a socket to another address. The server
honours ``Range`` (206 and ``Content-Range``), and can cut its first answer in the middle, never
answer, or answer 404.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from basam_lite import weights
from basam_lite.__main__ import main
from basam_lite.errors import UserError
from basam_lite.models import _OFFICIAL_FILE, build_sam, build_tiny_sam
from basam_lite.weights import REGISTRY, Checkpoint

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_GUARD = {"on": False}


def _no_other_address(event: str, args: tuple) -> None:
    """Audit hook: while a test here runs, a socket may only connect to the loopback."""
    if _GUARD["on"] and event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise RuntimeError(f"test_weights reached {address}: only 127.0.0.1 is allowed")


sys.addaudithook(_no_other_address)


# --- the server ---------------------------------------------------------------------------


class Files:
    """What the server serves: ``routes[path] = {"data": bytes, "cut": n, "hang": True,
    "delay": s}``; ``requests`` records ``(path, Range header)`` of every GET."""

    def __init__(self) -> None:
        self.routes: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gets(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            files.requests.append((self.path, rng))
            route = files.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.get("hang"):  # accept the connection, never answer
                files.release.wait(30)
                self.close_connection = True
                return
            data = route["data"]
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
            if start >= len(data):
                self.send_error(416)
                return
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = route.pop("cut", None)  # only the first answer is cut
            if cut is not None:
                body = body[: cut - start]
                self.close_connection = True
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i : i + (1 << 16)])
                if route.get("delay"):
                    time.sleep(route["delay"])

    return Handler


@pytest.fixture
def server():
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    httpd.daemon_threads = True
    files.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield files
    files.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def tiny_bytes() -> bytes:
    """A random-weight tiny SAM's state dict as ``torch.save`` writes it (fp16, ~7.6 MB)."""
    buffer = io.BytesIO()
    torch.save({k: v.half() for k, v in build_tiny_sam().state_dict().items()}, buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A fresh cache folder, downloads allowed, no proxy, and the loopback-only guard."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    for var in (*weights.download.OFFLINE_VARS, "http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _GUARD["on"] = True
    yield
    _GUARD["on"] = False


def register(
    monkeypatch, files: Files, data: bytes, name: str = "test_tiny", **fields
) -> Checkpoint:
    """A test-only registry entry for ``data`` served at ``/<filename>``, with every check the
    registry knows (size, SHA-256, MD5 prefix, git blob id) unless ``fields`` says otherwise."""
    filename = fields.pop("filename", f"{name}.pt")
    files.routes[f"/{filename}"] = {"data": data}
    entry = Checkpoint(
        name=name,
        family="segment_anything",
        model="tiny",
        licence="Apache-2.0",
        page="test",
        verified="test entry",
        url=files.url(f"/{filename}"),
        filename=filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5_prefix=hashlib.md5(data).hexdigest()[:6],
        git_blob_sha1=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        approx_size=f"{len(data) / 1e6:.1f} MB",
    )
    entry = replace(entry, **fields)
    monkeypatch.setitem(REGISTRY, name, entry)
    return entry


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


# --- the registry -------------------------------------------------------------------------


def test_registry_holds_every_family_with_its_checks() -> None:
    for name in ("vit_b", "vit_l", "vit_h"):
        e = REGISTRY[name]
        assert e.family == "segment_anything" and e.url.startswith(
            "https://dl.fbaipublicfiles.com/"
        )
        # Meta's file names carry the first six hex digits of the file's MD5
        assert e.filename == f"sam_{name}_{e.md5_prefix}.pth" and e.url.endswith(e.filename)
        assert len(e.sha256) == 64 and e.size > 3e8
        assert _OFFICIAL_FILE.search(e.filename).groups() == (name, e.md5_prefix)  # build_sam's
    for v in ("tiny", "small", "base_plus", "large"):
        e = REGISTRY[f"sam2.1_hiera_{v}"]
        assert e.family == "sam2" and e.url.endswith(f"/092824/sam2.1_hiera_{v}.pt")
        assert len(e.sha256) == 64 and e.size > 1e8
    mobile = REGISTRY["mobile_sam"]
    assert mobile.family == "mobilesam" and len(mobile.git_blob_sha1) == 40
    for hub_id in ("facebook/sam-vit-base", "facebook/sam2.1-hiera-tiny"):
        assert REGISTRY[hub_id].on_hub and REGISTRY[hub_id].url is None
    for e in REGISTRY.values():
        assert e.licence and e.verified and e.approx_size and e.page.startswith("https://")
        assert e.on_hub or (e.size and e.filename and e.url.startswith("https://"))


def test_cache_folder_default_and_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(weights.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert weights.cache_dir() == Path.home() / ".cache" / "basam_lite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "basam_lite"
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "mine"))
    assert weights.cache_dir() == tmp_path / "mine"


# --- downloads ----------------------------------------------------------------------------


def test_good_file_is_downloaded_verified_cached_and_loads(monkeypatch, server, tiny_bytes):
    entry = register(monkeypatch, server, tiny_bytes)
    path = weights.fetch("test_tiny", progress=False)
    assert path == weights.cache_dir() / "test_tiny.pt"
    assert path.read_bytes() == tiny_bytes
    assert leftovers(path.parent) == ["test_tiny.pt"]  # no .part left behind
    assert weights.problems(path, entry) == []
    assert weights.fetch("test_tiny", progress=False) == path
    assert server.gets("/test_tiny.pt") == [None]  # the second call used the cache
    loaded = build_sam("tiny", path)  # a real checkpoint: the fp16 weights of the tiny SAM
    reference = build_tiny_sam()
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float())


@pytest.mark.parametrize("check", ["sha256", "md5_prefix", "git_blob_sha1"])
def test_checksum_mismatch_deletes_the_download(monkeypatch, server, tiny_bytes, check):
    good = register(monkeypatch, server, tiny_bytes)
    others = {k: None for k in ("sha256", "md5_prefix", "git_blob_sha1") if k != check}
    register(monkeypatch, server, tiny_bytes, **others)  # only `check` can see the flip
    corrupt = bytearray(tiny_bytes)
    corrupt[len(corrupt) // 2] ^= 0xFF
    server.routes["/test_tiny.pt"]["data"] = bytes(corrupt)
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False)
    text = one_line(e)
    assert "failed verification" in text and "deleted" in text and good.url in text
    assert leftovers(weights.cache_dir()) == []


def test_a_file_of_another_size_is_refused_before_download(monkeypatch, server, tiny_bytes):
    register(monkeypatch, server, tiny_bytes)
    server.routes["/test_tiny.pt"]["data"] = tiny_bytes + b"extra"
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False)
    assert "not the registered file" in one_line(e)
    assert leftovers(weights.cache_dir()) == []


def test_cut_transfer_resumes_within_one_call(monkeypatch, server, tiny_bytes, capsys):
    register(monkeypatch, server, tiny_bytes)
    half = len(tiny_bytes) // 2
    server.routes["/test_tiny.pt"]["cut"] = half
    path = weights.fetch("test_tiny", progress=False, attempts=2, pause=0)
    assert path.read_bytes() == tiny_bytes
    assert server.gets("/test_tiny.pt") == [None, f"bytes={half}-"]
    assert f"resuming at byte {half:,}" in capsys.readouterr().err


def test_cut_transfer_is_kept_and_resumed_by_the_next_call(monkeypatch, server, tiny_bytes):
    register(monkeypatch, server, tiny_bytes)
    half = len(tiny_bytes) // 2
    server.routes["/test_tiny.pt"]["cut"] = half
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False, attempts=1)
    part = weights.cache_dir() / "test_tiny.pt.part"
    assert "kept in" in one_line(e) and str(part) in str(e.value)
    assert part.stat().st_size == half and not (weights.cache_dir() / "test_tiny.pt").exists()
    assert weights.fetch("test_tiny", progress=False, attempts=1).read_bytes() == tiny_bytes
    assert server.gets("/test_tiny.pt") == [None, f"bytes={half}-"]


def test_404_is_one_line_with_the_url_and_where_to_put_the_file(monkeypatch, server, tiny_bytes):
    entry = register(monkeypatch, server, tiny_bytes)
    del server.routes["/test_tiny.pt"]
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False, pause=0)
    text = one_line(e)
    assert "HTTP 404" in text and entry.url in text
    assert str(weights.cache_dir() / "test_tiny.pt") in text
    assert server.gets("/test_tiny.pt") == [None]  # a 404 is not retried
    assert leftovers(weights.cache_dir()) == []


def test_a_server_that_never_answers_times_out(monkeypatch, server, tiny_bytes):
    register(monkeypatch, server, tiny_bytes)
    server.routes["/test_tiny.pt"]["hang"] = True
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False, timeout=0.3, attempts=2, pause=0)
    assert time.monotonic() - start < 10
    text = one_line(e)
    assert "no answer within 0.3 s" in text and "2 tries" in text
    assert len(server.gets("/test_tiny.pt")) == 2


@pytest.mark.parametrize("variable", ["BASAM_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_is_one_line_and_a_file_put_by_hand_works(
    monkeypatch, server, tiny_bytes, variable
):
    entry = register(monkeypatch, server, tiny_bytes)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False)
    text = one_line(e)
    where = weights.cache_dir() / "test_tiny.pt"
    assert f"{variable}=1" in text and entry.url in text and str(where) in text
    where.parent.mkdir(parents=True)
    where.write_bytes(tiny_bytes)  # what the message says to do
    assert weights.fetch("test_tiny", progress=False) == where
    assert server.requests == []


def test_a_local_path_never_touches_the_network(monkeypatch, server, tiny_bytes, tmp_path):
    register(monkeypatch, server, tiny_bytes)
    mine = tmp_path / "elsewhere.pt"
    mine.write_bytes(tiny_bytes)
    _GUARD["on"] = False
    monkeypatch.setattr("socket.socket.connect", _refuse)
    assert weights.fetch(str(mine)) == mine
    assert weights.fetch(mine) == mine
    assert build_sam("tiny", mine) is not None
    assert server.requests == []


def _refuse(*args: object) -> None:
    raise AssertionError("no connection was expected")


def test_unknown_name_is_one_line() -> None:
    with pytest.raises(UserError) as e:
        weights.fetch("vit_x")
    assert "neither a registered checkpoint nor an existing file or folder" in one_line(e)


def test_a_registry_name_wins_over_a_local_folder_of_that_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vit_b").mkdir()
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    with pytest.raises(UserError, match="sam_vit_b_01ec64.pth"):
        weights.fetch("vit_b")
    assert weights.fetch("./vit_b") == Path("vit_b")
    assert weights.names("segment_anything") == ("vit_b", "vit_l", "vit_h")
    assert weights.names("sam2")[0] == "sam2.1_hiera_tiny"


def test_a_refused_connection_is_one_line(monkeypatch, server, tiny_bytes):
    import socket

    with socket.socket() as s:  # a port that nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/test_tiny.pt"
    register(monkeypatch, server, tiny_bytes, url=url)
    with pytest.raises(UserError) as e:
        weights.fetch("test_tiny", progress=False, attempts=2, pause=0)
    text = one_line(e)
    assert "could not download 'test_tiny'" in text and url in text and "2 tries" in text
    assert str(weights.cache_dir() / "test_tiny.pt") in text


_LOOPBACK_ONLY = """
import os, sys
def _hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] != "127.0.0.1":
        sys.stderr.write(f"NETWORK {args[1]!r}\\n")
        os._exit(97)
sys.addaudithook(_hook)
"""


def _read_only_run(cache: Path, entries: list[Checkpoint]) -> subprocess.CompletedProcess:
    """Fetch ``entries`` in a subprocess that sees ``cache`` read-only (bubblewrap, so that
    it holds even for root)."""
    script = _LOOPBACK_ONLY + textwrap.dedent(
        f"""
        from basam_lite import weights
        from basam_lite.errors import UserError
        for entry in {entries!r}:
            try:
                print("ok", weights.fetch(entry, progress=False))
            except UserError as e:
                print("error", e)
        """
    ).replace("Checkpoint(", "weights.Checkpoint(")
    env = {**os.environ, "PYTHONPATH": str(ROOT), weights.CACHE_ENV: str(cache)}
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        command = ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(cache), str(cache), *command]
    else:
        cache.chmod(0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    finally:
        cache.chmod(0o755)


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("bwrap") is None,
    reason="root ignores file modes, and bubblewrap (for a read-only mount) is not installed",
)
def test_read_only_cache(monkeypatch, server, tiny_bytes):
    present = register(monkeypatch, server, tiny_bytes, name="present")
    missing = register(monkeypatch, server, tiny_bytes, name="missing")
    cache = weights.cache_dir()
    cache.mkdir(parents=True)
    (cache / "present.pt").write_bytes(tiny_bytes)
    done = _read_only_run(cache, [present, missing])
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-2000:]
    assert lines[0] == f"ok {cache / 'present.pt'}"  # a cached file is read, not written
    assert lines[1].startswith("error the weights cache") and "not writable" in lines[1]
    assert weights.CACHE_ENV in lines[1] and missing.url in lines[1] and len(lines) == 2
    assert server.gets("/missing.pt") == []


def _fetch_in_child(name: str, queue) -> None:
    try:
        queue.put(("ok", str(weights.fetch(name, progress=False))))
    except BaseException as e:  # reported to the parent, which fails the test
        queue.put(("error", repr(e)))


def test_two_processes_fetching_the_same_file(monkeypatch, server, tiny_bytes):
    entry = register(monkeypatch, server, tiny_bytes)
    server.routes["/test_tiny.pt"]["delay"] = 0.01  # ~1.2 s: the two fetches overlap
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_fetch_in_child, args=("test_tiny", queue)) for _ in "ab"]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    path = weights.cache_dir() / "test_tiny.pt"
    assert results == [("ok", str(path))] * 2
    assert weights.problems(path, entry) == []
    assert leftovers(path.parent) == ["test_tiny.pt"]
    assert server.gets("/test_tiny.pt") == [None]  # one downloaded, the other waited


# --- Hugging Face ids ---------------------------------------------------------------------


def test_hub_id_offline_is_one_line(monkeypatch, tmp_path):
    constants = pytest.importorskip("huggingface_hub.constants")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        weights.fetch("facebook/sam-vit-base")
    text = one_line(e)
    assert "facebook/sam-vit-base" in text and "BASAM_OFFLINE=1" in text
    assert "config.json, model.safetensors" in text


def test_hub_id_from_its_cache(monkeypatch, tmp_path):
    """A snapshot already in huggingface_hub's cache is found without the network."""
    constants = pytest.importorskip("huggingface_hub.constants")

    hub = tmp_path / "hub"
    repo = hub / "models--facebook--sam-vit-base"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.fetch("facebook/sam-vit-base") == snapshot
    assert weights.cached(REGISTRY["facebook/sam-vit-base"]) == snapshot


# --- build_sam(pretrained=True) -----------------------------------------------------------


def test_pretrained_downloads_through_the_cache_and_loads_with_the_checks(
    monkeypatch, server, tiny_bytes
):
    """``build_sam("vit_b", pretrained=True)`` fetches the registry's ``vit_b`` (here a test
    entry on the local server, a tiny checkpoint under an official-style name with its real MD5
    prefix) and loads it through the same checks as a local file: the official name's MD5 prefix
    passes, then the shapes say it is not a ViT-B."""
    prefix = hashlib.md5(tiny_bytes).hexdigest()[:6]
    register(monkeypatch, server, tiny_bytes, name="vit_b", filename=f"sam_vit_b_{prefix}.pth")
    with pytest.raises(UserError, match=r"does not fit model 'vit_b': it looks like tiny"):
        build_sam("vit_b", pretrained=True)
    assert (weights.cache_dir() / f"sam_vit_b_{prefix}.pth").read_bytes() == tiny_bytes


def test_pretrained_offline_and_bad_combinations(monkeypatch, server, tiny_bytes, tmp_path):
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        build_sam("vit_b", pretrained=True)
    assert REGISTRY["vit_b"].url in one_line(e) and "sam_vit_b_01ec64.pth" in str(e.value)
    with pytest.raises(UserError, match="pretrained=True is for vit_b"):
        build_sam("tiny", pretrained=True)
    with pytest.raises(UserError, match="not both"):
        build_sam("vit_b", tmp_path / "x.pth", pretrained=True)
    assert type(build_sam("tiny")).__name__ == "Sam"  # random weights, as before


# --- the command line ---------------------------------------------------------------------


def test_cli_get_list_verify(monkeypatch, server, tiny_bytes, capsys):
    register(monkeypatch, server, tiny_bytes)
    assert main(["weights", "get", "test_tiny"]) == 0  # progress bar and messages on stderr
    path = weights.cache_dir() / "test_tiny.pt"
    printed = capsys.readouterr()
    assert printed.out == f"{path}\n" and "verifying test_tiny.pt.part" in printed.err
    assert main(["weights", "get", "test_tiny", "--no-progress"]) == 0
    assert capsys.readouterr().out == f"{path}\n"
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {weights.cache_dir()}" in out and "downloads: allowed" in out
    assert re.search(rf"^test_tiny\s+segment_anything\s+.*{re.escape(str(path))}$", out, re.M)
    assert re.search(r"^vit_b\s+segment_anything\s+375 MB\s+Apache-2.0\s+-$", out, re.M)
    assert main(["weights", "verify"]) == 0
    assert capsys.readouterr().out.startswith(f"ok   test_tiny  {path}: size")
    corrupt = bytearray(tiny_bytes)
    corrupt[100] ^= 0xFF
    path.write_bytes(bytes(corrupt))  # same size, other content
    assert main(["weights", "verify", str(path)]) == 1
    assert "BAD  test_tiny" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    for argv in (
        ["weights", "get", "vit_x"],
        ["weights", "verify", str(tmp_path / "absent.pth")],
        ["weights", "verify", __file__],
        ["weights", "frobnicate"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_cli_list_shows_a_partial_download(monkeypatch, server, tiny_bytes, capsys):
    register(monkeypatch, server, tiny_bytes)
    server.routes["/test_tiny.pt"]["cut"] = len(tiny_bytes) // 2
    with pytest.raises(UserError):
        weights.fetch("test_tiny", progress=False, attempts=1)
    assert main(["weights", "list"]) == 0
    assert re.search(r"^test_tiny .*partial: .* \(resumes\)$", capsys.readouterr().out, re.M)


# --- the README's two commands download nothing -------------------------------------------

_NO_NETWORK = """
import os, sys
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
        sys.stderr.write(f"NETWORK {event} {args!r}\\n")
        sys.stderr.flush()
        os._exit(97)
sys.addaudithook(_hook)
"""


@pytest.mark.slow
def test_readme_commands_download_nothing(tmp_path):
    """Downloads forbidden and any socket or URL opened fatal (exit 97): the main command's code
    path (``python -m basam_lite sweep`` with the README's defaults cut to one image and one
    size per axis: the same models, data and variants) and the tests' model path (the notebooks'
    ``sam_from_env()``, their switch ``course_model()`` and every bundled model) run and download
    nothing."""
    script = _NO_NETWORK + textwrap.dedent(
        f"""
        from basam_lite.__main__ import main
        from basam_lite.models import TINY_NAMES, build_sam, sam_from_env
        _, description = sam_from_env()
        print("sam_from_env:", description)
        from basam_lite.course import course_model
        print("course_model:", course_model().description)
        for name in TINY_NAMES:
            build_sam(name)
        sys.exit(main(["sweep", "--out", {str(tmp_path / "sweep.csv")!r}, "--limit", "1",
                       "--resolutions", "128", "--extent-resolutions", "256",
                       "--extent-limit", "1", "--no-plot"]))
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BASAM_SAM_CHECKPOINT", "BASAM_COURSE_MODEL", "BASAM_COURSE_BUDGET")
    }
    env.update(PYTHONPATH=str(ROOT), BASAM_OFFLINE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env[weights.CACHE_ENV] = str(tmp_path / "empty-cache")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "sam_from_env: tiny-vanilla" in done.stdout
    assert "course_model: tiny-vanilla" in done.stdout  # the notebooks' switch, default
    assert (tmp_path / "sweep.csv").stat().st_size > 0
    assert (tmp_path / "sweep_extent.csv").stat().st_size > 0
    assert not (tmp_path / "empty-cache").exists()


def test_every_registry_family_is_a_registered_encoder_family() -> None:
    """A weights entry names the family whose adapter builds its model (encoders.FAMILIES)."""
    from basam_lite.encoders import FAMILIES

    assert {e.family for e in REGISTRY.values()} <= set(FAMILIES)
