"""The HTML report: tables from summarised rows, comparisons, players and spectrograms, self-contained."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import chromium

pytest.importorskip("matplotlib")

from rvqgan.evaluate import Item, paired, summarize  # noqa: E402
from rvqgan.report import write_report  # noqa: E402


def test_report_holds_tables_players_and_spectrogram_pairs(tmp_path):
    sr = 16000
    rng = np.random.default_rng(0)
    items = [Item(f"{g}/a.wav", g, (0.1 * rng.standard_normal(sr)).astype(np.float32), sr) for g in ("speech", "music")]
    rows = []
    for item in items:
        for system, family, kbps, mel in (("m 4q", "m", 6.0, 1.5), ("opus 8", "opus", 8.0, 2.0)):
            rows.append(
                {"item": item.name, "group": item.group, "system": system, "family": family, "n_codebooks": 4,
                 "kbps_codes": kbps, "kbps_file": kbps, "mel": mel, "si_sdr": 3.0, "f0_rmse_cents": 20.0}
            )  # fmt: skip
    summary = summarize(rows)
    result = {
        "model": "m", "data": "d", "seconds": 1.0, "n_items": 2, "groups": {"speech": 1, "music": 1},
        "summary": summary, "codebook_usage": {"m 4q": {"efficiency": 0.5, "perplexity": [10.0, 20.0]}},
        "comparisons": [paired(rows, "m 4q", "opus 8", "mel")],
    }  # fmt: skip
    recons = {items[0].name: (items[0], {"m 4q": items[0].audio})}
    pairs = {i.name: (i, "m 4q", i.audio * 0.5) for i in items}
    path = tmp_path / "report.html"
    write_report(path, result, rows, recons, pairs)
    page = path.read_text()
    assert page.count("<table>") >= 4  # overall, two groups, comparisons (and codebook usage)
    assert "F0 error cents" in page and "50.0 %" in page
    assert page.count("data:audio/flac;base64,") == 2  # reference and model players of the one listened item
    assert "Spectrograms of every item" in page and page.count('alt="spectrograms of') == 3
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


# A name that runs script if a page embeds it as markup; folder, file and model names can be anything.
INJECTED = "<img src=x onerror=\"document.body.dataset.pwned='yes'\"><script>document.body.dataset.pwned='yes'</script>"


def hostile_result(sr: int = 16000) -> tuple[dict, list[dict], dict, dict]:
    """`write_report`'s arguments for items, groups, systems and a model whose names are markup,
    formula-like text and matplotlib maths."""
    rng = np.random.default_rng(0)
    group = f"{INJECTED}$\\frac{{$"
    item = Item(f"{group}/=cmd|' /C calc'!A0 $x^$.wav", group, (0.1 * rng.standard_normal(sr)).astype(np.float32), sr)
    system, family = f"{INJECTED} 4q", f"{INJECTED}$"
    rows = [
        {"item": item.name, "group": item.group, "system": system, "family": family, "n_codebooks": 4,
         "kbps_codes": 6.0, "kbps_file": 6.0, "mel": 1.5, "si_sdr": -3.2}
    ]  # fmt: skip
    result = {
        "model": INJECTED, "data": INJECTED, "seconds": 1.0, "n_items": 1, "groups": {group: 1},
        "summary": summarize(rows), "codebook_usage": {system: {"efficiency": 0.5, "perplexity": [10.0]}},
        "comparisons": [{**paired(rows, system, system, "mel"), "metric": INJECTED}],
    }  # fmt: skip
    return result, rows, {item.name: (item, {system: item.audio})}, {item.name: (item, system, item.audio)}


def test_names_are_text_in_the_report_never_markup(tmp_path):
    result, rows, recons, pairs = hostile_result()
    path = tmp_path / "report.html"
    write_report(path, result, rows, recons, pairs)  # matplotlib draws the maths-like names as text
    page = path.read_text()
    assert "<img src=x" not in page and "<script>document" not in page
    assert page.count("&lt;img src=x onerror=") >= 8  # groups line, headings, tables, players, comparisons
    browser = chromium()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "<h1>rvqgan evaluation</h1>" in out.stdout, out.stderr[-500:]
    assert "pwned" not in out.stdout.replace("dataset.pwned", "")  # the injected code never ran
