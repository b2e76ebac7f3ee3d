"""The 2048 px rows of ``bench``: the second child runs with glibc's mmap threshold fixed in its
environment (the user's setting, never the library's) and is reported as its own row, judged
against the same 2 GB target; a failed child is a FAIL row with its error, not a crash."""

from __future__ import annotations

import argparse

from basam_lite import bench


def test_the_fixed_mmap_child_gets_the_variable_and_is_judged(monkeypatch):
    seen = {}

    def fake_child(spec, timeout=900.0, env=None):
        seen.update(spec=spec, env=env)
        return {"ok": True, "seconds": 60.0, "peak_rss_mb": 1836.0, "forward_rss_mb": 700.0}

    monkeypatch.setattr(bench, "run_child", fake_child)
    row = bench._encoder_2048_fixed_mmap(argparse.Namespace(threads=2))
    assert seen["env"] == {"MALLOC_MMAP_THRESHOLD_": str(4 << 20)}
    assert seen["spec"] == {
        "kind": "encoder",
        "model": "vit_b",
        "size": 2048,
        "preset": "paper",
        "threads": 2,
    }
    assert (row.case, row.size_px, row.peak_rss_mb) == ("vit_b:paper:mmap", 2048, 1836.0)
    assert row.status == "PASS"  # 1836 MiB = 1.93e9 bytes <= 2e9
    over = {"ok": True, "seconds": 60.0, "peak_rss_mb": 1938.0, "forward_rss_mb": 800.0}
    monkeypatch.setattr(bench, "run_child", lambda spec, timeout=900.0, env=None: over)
    assert bench._encoder_2048_fixed_mmap(argparse.Namespace(threads=2)).status == "FAIL"
    failed = {"ok": False, "error": "exit code -9: killed"}
    monkeypatch.setattr(bench, "run_child", lambda spec, timeout=900.0, env=None: failed)
    row = bench._encoder_2048_fixed_mmap(argparse.Namespace(threads=2))
    assert (row.status, row.note) == ("FAIL", "exit code -9: killed")


def test_run_child_adds_the_variables_to_the_childs_environment(monkeypatch):
    captured = {}

    class Done:
        returncode, stdout, stderr = 0, '{"ok": true}\n', ""

    def fake_run(cmd, **kw):
        captured.update(kw)
        return Done()

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench.run_child({"kind": "block"}, env={"MALLOC_MMAP_THRESHOLD_": "1"}) == {"ok": True}
    assert captured["env"]["MALLOC_MMAP_THRESHOLD_"] == "1"
    assert captured["env"]["PYTHONWARNINGS"] == "ignore"
