"""The README's speed section quotes the committed benchmark runs, not numbers typed by hand:
every block time and ratio equals ``docs/benchmark.csv`` (to the decimals shown), every peers row
``docs/benchmark-peers.csv`` or ``docs/benchmark-peers-large.csv`` (the 2048 and 3072 px rows),
and the 2048 px sentence the encoder row."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCH = ROOT / "docs" / "benchmark.csv"
PEERS = (ROOT / "docs" / "benchmark-peers.csv", ROOT / "docs" / "benchmark-peers-large.csv")


def speed_section() -> str:
    return README.split("\n## Speed and memory")[1].split("\n## ")[0]


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """Body rows of the markdown table whose header starts with ``| first_header``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not committed here")
    return list(csv.DictReader(path.open()))


def seconds(cell: str) -> float | None:
    m = re.match(r"\**([0-9.]+)", cell)
    return float(m.group(1)) if m else None


def test_block_table_is_the_committed_benchmark() -> None:
    rows = csv_rows(BENCH)
    block = {(r["case"], int(r["grid"])): r for r in rows if r["section"] == "block"}
    shown = table_rows(speed_section(), "tokens")
    assert shown, "no block table in the README's speed section"
    header = next(ln for ln in speed_section().splitlines() if ln.startswith("| tokens"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    cases = {"(a)": "sam_block", "(b)": "basam_paper", "(b+)": "paper_compiled"}
    cases |= {"(b0)": "basam_vanilla", "(c)": "floor"}
    for cells in shown:
        grid = int(cells[0].split(" x ")[0])
        times: dict[str, float | None] = {}
        for column, cell in zip(columns[1:], cells[1:], strict=True):
            label = column.split()[0]
            if "/" in label:  # a ratio of two of the cases shown
                num, den = (times[cases[x]] for x in re.findall(r"\([^)]*\)", label))
                if num and den:
                    assert seconds(cell) == pytest.approx(num / den, abs=5e-3), (cells, label)
                else:
                    assert seconds(cell) is None, (cells, label)
                continue
            case = cases[label]
            want = block[(case, grid)]["seconds"]
            times[case] = float(want) if want else None
            if want:
                # the CSV keeps 4 decimals, the table 3 of the unrounded median: at most 5e-4 apart
                assert seconds(cell) == pytest.approx(float(want), abs=5e-4 + 1e-9), (cells, case)
            else:
                assert seconds(cell) is None, (cells, case)
    assert {"basam_paper", "paper_compiled", "basam_vanilla", "floor"} <= set(times)


def test_2048_sentence_is_the_committed_benchmark() -> None:
    rows = csv_rows(BENCH)
    enc = {r["case"]: r for r in rows if r["section"] == "encoder_2048"}
    text = " ".join(speed_section().split())
    m = re.search(r"2048 x 2048\*\* .*?in ([0-9]+) s with a peak RSS of \*\*([0-9.]+) GB\*\*", text)
    assert m, "the 2048 px sentence is missing"
    paper = enc["vit_b:paper"]
    assert int(m.group(1)) == round(float(paper["seconds"]))
    assert float(m.group(2)) == pytest.approx(float(paper["peak_rss_mb"]) * 2**20 / 1e9, abs=0.05)
    fits = re.search(r"largest side that fits in 16 GB[^0-9]*([0-9,]+) px", text)
    assert fits and int(fits.group(1).replace(",", "")) == int(enc["vit_b:paper:fits"]["size_px"])


def test_peers_table_is_the_committed_peers_run() -> None:
    rows = {(r["case"], int(r["size_px"])): r for path in PEERS for r in csv_rows(path)}
    shown = table_rows(speed_section(), "px")
    assert shown, "no peers table in the README's speed section"
    names = {
        "timm": "timm",
        "Hugging Face": "hf_sdpa",
        "vanilla": "vanilla",
        "paper": "paper",
    }
    for cells in shown:
        side = int(cells[0])
        peer = next(v for k, v in names.items() if k in cells[1])
        r = rows[(peer, side)]
        assert cells[2] == r["status"]
        if r["seconds"]:
            assert seconds(cells[3]) == pytest.approx(float(r["seconds"]), abs=5e-3)
        if r["ratio"]:
            assert seconds(cells[4]) == pytest.approx(float(r["ratio"]), abs=5e-3)
        if r["peak_rss_mb"]:
            assert float(cells[5].replace(",", "")) == pytest.approx(float(r["peak_rss_mb"]), abs=1)
        if cells[6] == "reference":
            assert peer == "timm" and float(r["max_rel_diff"]) == 0.0
        elif cells[6] == "reference (timm failed)":  # the first peer that ran is the reference
            assert rows[("timm", side)]["status"] != "ok" and float(r["max_rel_diff"]) == 0.0
        elif r["max_rel_diff"]:
            assert float(cells[6].split()[0]) == pytest.approx(float(r["max_rel_diff"]), rel=0.06)
        else:
            assert cells[6] == "-"


def test_speed_section_names_the_reports_command_and_load() -> None:
    report = (ROOT / "docs" / "benchmark.md").read_text()
    command = report.split("```bash\n")[1].split("\n```")[0].strip()
    section = speed_section()
    assert f"```bash\n{command}\n```" in section, command
    load = re.search(r"load average ([0-9.]+)", report)
    said = re.search(r"load average ([0-9.]+) at the end of the run", " ".join(section.split()))
    assert load and said and said.group(1) == load.group(1)
