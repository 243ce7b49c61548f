"""MUSHRA listening tests: stimuli (anchors, loudness, blind names), the page in headless Chromium, the analysis."""

from __future__ import annotations

import html
import json
import os
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import chromium, write_recordings

import rvqgan
from rvqgan.audio import loudness
from rvqgan.cli import main
from rvqgan.listen import (
    ANCHORS,
    HIDDEN_REFERENCE,
    MAX_JSON_BYTES,
    _write_page,
    analysis_dir,
    analyze,
    key_path,
    loudness_matched,
    lowpass,
    prepare_test,
    stimulus_key,
)

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")


def harmonic(seconds: float, sample_rate: int, f0: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 30) if f0 * k < sample_rate / 2)
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("listen")
    for group, sr, f0 in (("speech", 16000, 140.0), ("music", 44100, 330.0), ("music", 44100, 220.0)):
        folder = root / "data" / group
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{group}{int(f0)}.wav", harmonic(1.5, sr, f0, int(f0)), sr)
    model = root / "tiny.safetensors"
    rvqgan.save_model(rvqgan.build_model("tiny"), model)
    prepare_test([str(model)], root / "data", root / "test", kbps=[8, 16], baselines=["cmd:copy=cp {in} {out}"], seconds=1.0)
    return root / "test"


def test_lowpass_anchor_removes_what_is_above_its_cutoff():
    sr = 44100
    x = harmonic(1.0, sr, 500.0, 0)
    y = lowpass(x, sr, 3500.0)
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    assert spectrum[freqs > 3600].sum() < 1e-4 * spectrum.sum()  # at least 40 dB down
    band = (freqs > 100) & (freqs < 3000)
    kept = spectrum[band].sum() / (np.abs(np.fft.rfft(x)) ** 2)[band].sum()
    assert 0.98 < kept < 1.02  # the pass band is left alone


def test_loudness_matched_levels_and_peaks():
    sr = 16000
    x = harmonic(1.0, sr, 200.0, 1)
    out = loudness_matched({"a": x, "b": 0.1 * x, "c": 3.0 * lowpass(x, sr, 1000.0)}, sr)
    levels = [loudness(v[None], sr) for v in out.values()]
    assert max(levels) - min(levels) < 0.1
    assert max(float(np.abs(v).max()) for v in out.values()) <= 0.99 + 1e-6


def test_the_test_folder_is_blind_and_complete(test_dir):
    test = json.loads(key_path(test_dir).read_text())
    assert not (test_dir / "stimuli.json").exists() and not list(test_dir.rglob("*.json"))  # the key is not hosted
    page = (test_dir / "index.html").read_text()
    systems = {HIDDEN_REFERENCE, *ANCHORS, "tiny 8 kbps", "tiny 16 kbps", "copy"}
    assert set(test["systems"]) == systems and len(test["items"]) == 3
    for name in systems:
        assert name not in page  # the page never names a system
    assert "<script src" not in page and "http" not in page.split("<script")[0]  # no external scripts or fonts
    for item in test["items"]:
        assert {s["system"] for s in item["stimuli"].values()} == systems
        ref, sr = sf.read(test_dir / item["reference"])
        sizes = {(test_dir / s["file"]).stat().st_size for s in item["stimuli"].values()}
        assert sizes == {(test_dir / item["reference"]).stat().st_size}  # WAV: file sizes say nothing either
        for stimulus in item["stimuli"].values():
            audio, rate = sf.read(test_dir / stimulus["file"])
            assert rate == sr and len(audio) == len(ref) == int(1.0 * sr)
        hidden = next(s for s in item["stimuli"].values() if s["system"] == HIDDEN_REFERENCE)
        assert np.array_equal(sf.read(test_dir / hidden["file"])[0], ref)
        assert list(item["stimuli"]) == sorted(item["stimuli"])  # listed by key, a hash of the test, item and system
    # so the hidden reference's place in the list changes from item to item; three items may share one by
    # chance (1 in 36), so the rule is checked over many item names (all in one place: 1 in 6**63)
    spots = {
        sorted(systems, key=lambda s: stimulus_key(test["test_id"], f"item{i}", s)).index(HIDDEN_REFERENCE) for i in range(64)
    }
    assert len(spots) > 1


def test_a_prepared_test_is_not_replaced_silently(test_dir, capsys):
    args = [
        "listen",
        "--data",
        str(test_dir.parent / "data"),
        "-o",
        str(test_dir),
        "--model",
        str(test_dir.parent / "tiny.safetensors"),
    ]
    assert main(args) == 1 and "use --overwrite" in capsys.readouterr().err
    assert main([*args, "--per-group", "0"]) == 1 and "--per-group" in capsys.readouterr().err


def run_listener(test_dir: Path, tmp_path: Path, name: str, seed: int) -> tuple[dict, dict, int]:
    """A scripted listener in headless Chromium → (its results file, the slider values it set, Next presses refused)."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / ('profile-' + name)}",
        "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=300000",
        "--dump-dom",
        (test_dir / "index.html").as_uri() + f"?autotest=1&listener={name}&seed={seed}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert 'data-finished="yes"' in out.stdout, out.stdout[-1500:]
    assert "CONSOLE" not in out.stderr, [line for line in out.stderr.splitlines() if "CONSOLE" in line]

    def pre(element_id: str) -> dict:
        return json.loads(html.unescape(out.stdout.split(f'<pre id="{element_id}" hidden="">')[1].split("</pre>")[0]))

    blocked = int(out.stdout.split('data-blocked="')[1].split('"')[0])
    return pre("test-results"), pre("test-set"), blocked


def test_a_scripted_listener_takes_the_test_in_headless_chromium(test_dir, tmp_path):
    test = json.loads(key_path(test_dir).read_text())
    first, first_set, first_blocked = run_listener(test_dir, tmp_path, "alice", 7)
    second, _, _ = run_listener(test_dir, tmp_path, "bob", 8)
    for result in (first, second):
        assert result["format"] == "rvqgan-mushra-results" and result["test_id"] == test["test_id"]
        assert "HeadlessChrome" in result["browser"]
        assert sorted(e["item"] for e in result["items"]) == [d["id"] for d in test["items"]]
        for entry in result["items"]:
            item = next(d for d in test["items"] if d["id"] == entry["item"])
            assert sorted(entry["scores"]) == sorted(item["stimuli"]) == sorted(entry["order"])  # each stimulus once
            assert all(result["playing_events"].get(key, 0) >= 1 for key in item["stimuli"])  # each one played
            assert all(entry["played_seconds"][key] >= 0.9 for key in item["stimuli"])  # long enough to count as heard
        assert result["playing_events"]["ref"] >= len(test["items"])
    saved = {f"{e['item']}/{k}": v for e in first["items"] for k, v in e["scores"].items()}
    assert saved == first_set  # the results hold exactly what the sliders were set to
    assert first_blocked == 1 + len(test["items"])  # Next was refused on every page until all was heard and rated
    orders = [[(e["item"], e["order"]) for e in r["items"]] for r in (first, second)]
    assert orders[0] != orders[1]  # randomised per listener
    for result in (first, second):
        (tmp_path / f"{result['listener']}.json").write_text(json.dumps(result))
    analysis = analyze(test_dir, [tmp_path / "alice.json", tmp_path / "bob.json"])
    assert set(analysis["listeners"]) == {"alice", "bob"} and (analysis_dir(test_dir) / "analysis.html").exists()
    assert all(v["items"] == len(test["items"]) for v in analysis["listeners"].values())


def synthetic_results(test: dict, listener: str, scores: dict[str, float]) -> dict:
    items = []
    for item in test["items"]:
        keys = list(item["stimuli"])
        items.append({"item": item["id"], "order": keys, "scores": {k: scores[item["stimuli"][k]["system"]] for k in keys}})
    return {"format": "rvqgan-mushra-results", "version": 1, "test_id": test["test_id"], "listener": listener, "items": items}


GOOD = {
    HIDDEN_REFERENCE: 100.0,
    "anchor 3.5 kHz": 20.0,
    "anchor 7 kHz": 45.0,
    "tiny 8 kbps": 30.0,
    "tiny 16 kbps": 50.0,
    "copy": 96.0,
}


def write_results(test: dict, folder: Path, listeners: dict[str, dict[str, float]]) -> list[Path]:
    paths = []
    for name, scores in listeners.items():
        paths.append(folder / f"{name}.json")
        paths[-1].write_text(json.dumps(synthetic_results(test, name, scores)))
    return paths


def test_analysis_returns_known_means_and_excludes_a_careless_listener(test_dir, tmp_path):
    test = json.loads(key_path(test_dir).read_text())
    other = {**GOOD, "tiny 8 kbps": 40.0, "tiny 16 kbps": 60.0}
    careless = {name: 50.0 for name in GOOD}  # hidden reference below 90 on every item
    analysis = analyze(test_dir, write_results(test, tmp_path, {"ann": GOOD, "ben": other, "cat": careless}))
    assert analysis["excluded"] == ["cat"] and analysis["kept"] == ["ann", "ben"]
    overall = analysis["overall"]
    assert overall[HIDDEN_REFERENCE]["mean"] == 100.0 and overall["copy"]["mean"] == 96.0
    assert overall["tiny 8 kbps"]["mean"] == pytest.approx(35.0) and overall["tiny 16 kbps"]["mean"] == pytest.approx(55.0)
    assert overall["tiny 8 kbps"]["n"] == 6  # 2 listeners × 3 items
    low, high = overall["tiny 8 kbps"]["ci95"]
    assert low < 35.0 < high
    assert analysis["per_domain"]["speech"]["tiny 16 kbps"]["n"] == 2
    assert set(analysis["paired"]) == {
        "tiny 8 kbps − tiny 16 kbps",
        "tiny 8 kbps − copy",
        "tiny 16 kbps − copy",
    }  # systems under test only
    pair = analysis["paired"]["tiny 8 kbps − tiny 16 kbps"]
    assert pair["mean"] == pytest.approx(-20.0) and pair["ci95"] == pytest.approx([-20.0, -20.0])
    assert analysis["paired"]["tiny 8 kbps − copy"]["p_holm"] < 0.01


def test_post_screening_cut_off_is_fifteen_percent_of_items(test_dir, tmp_path):
    """3 items: one low hidden-reference rating is 33 % (excluded); with 7 ratings of 100 it would pass."""
    test = json.loads(key_path(test_dir).read_text())
    result = synthetic_results(test, "dan", GOOD)
    first = result["items"][0]
    hidden = next(
        k
        for k, v in next(d for d in test["items"] if d["id"] == first["item"])["stimuli"].items()
        if v["system"] == HIDDEN_REFERENCE
    )
    first["scores"][hidden] = 89.0
    (tmp_path / "dan.json").write_text(json.dumps(result))
    paths = [*write_results(test, tmp_path, {"eve": GOOD}), tmp_path / "dan.json"]
    analysis = analyze(test_dir, paths)
    assert analysis["excluded"] == ["dan"] and analysis["listeners"]["dan"]["hidden_reference_below_90"] == 1


def test_one_listener_gives_intervals_only_where_there_are_two_ratings(test_dir, tmp_path, capsys):
    test = json.loads(key_path(test_dir).read_text())
    analysis = analyze(test_dir, write_results(test, tmp_path, {"ann": GOOD}))
    assert analysis["overall"]["copy"]["ci95"] == pytest.approx([96.0, 96.0])  # 3 equal ratings
    assert analysis["per_domain"]["speech"]["copy"]["ci95"] == [None, None]  # one rating: no interval
    paths = write_results(test, tmp_path, {"cat": {name: 50.0 for name in GOOD}})
    assert main(["listen", "--analyze", str(test_dir), *map(str, paths)]) == 1
    assert "all 1 listeners were excluded" in capsys.readouterr().err


def test_results_of_another_test_duplicates_or_missing_stimuli_are_refused(test_dir, tmp_path, capsys):
    test = json.loads(key_path(test_dir).read_text())
    result = synthetic_results(test, "x", {s: 50.0 for s in test["systems"]})
    cases = {
        "other": {**result, "test_id": "nope"},
        "nameless": {k: v for k, v in result.items() if k != "listener"},
        "twice": {**result, "items": result["items"] + result["items"][:1]},
        "boolean": {**result, "items": [{**result["items"][0], "scores": dict.fromkeys(result["items"][0]["scores"], True)}]},
        "notdict": {**result, "items": [5]},
    }
    messages = {
        "other": "another test",
        "nameless": "no listener",
        "twice": "rated twice",
        "boolean": "0 to 100",
        "notdict": "exactly the stimuli",
    }
    for name, data in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        assert main(["listen", "--analyze", str(test_dir), str(tmp_path / f"{name}.json")]) == 1
        err = capsys.readouterr().err.strip()
        assert messages[name] in err and "\n" not in err, (name, err)
    (tmp_path / "a.json").write_text(json.dumps(result))
    (tmp_path / "b.json").write_text(json.dumps(result))
    assert main(["listen", "--analyze", str(test_dir), str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "second results file of listener 'x'" in capsys.readouterr().err
    del result["items"][0]["scores"][next(iter(result["items"][0]["scores"]))]
    (tmp_path / "missing.json").write_text(json.dumps(result))
    assert main(["listen", "--analyze", str(test_dir), str(tmp_path / "missing.json")]) == 1
    assert "exactly the stimuli" in capsys.readouterr().err
    assert main(["listen", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "t")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_the_example_test_from_valid(tmp_path, capsys):
    """The README's example, smaller: the default model at 3 and 7.5 kbps against Opus 6 and 8 kbps on a
    folder laid out like valid/ (speech, music and general recordings, here synthetic)."""
    pytest.importorskip("av")
    valid = write_recordings(tmp_path / "valid", files=2, seconds=4.0)
    args = ["listen", "--model", "default", "--kbps", "3,7.5", "--baseline", "opus:6,8", "--data", str(valid)]
    assert main([*args, "--per-group", "1", "--seconds", "3", "-o", str(tmp_path / "t")]) == 0
    test = json.loads(key_path(tmp_path / "t").read_text())
    assert test["systems"][3:] == ["default 3 kbps", "default 7.5 kbps", "opus 6", "opus 8"]
    assert sorted(d["domain"] for d in test["items"]) == ["general", "music", "speech"]
    assert "3 items" in capsys.readouterr().out


def renamed_test(test_dir: Path, folder: Path, names: dict[str, str]) -> tuple[Path, dict]:
    """A copy of the test's key beside `folder / "t"`, its systems renamed by `names` → (the test folder it keys, the key)."""
    text = key_path(test_dir).read_text()
    for old, new in names.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    (folder / "t.key.json").write_text(text)
    return folder / "t", json.loads(text)


def test_names_from_results_and_key_are_text_on_pages_and_terminals(test_dir, tmp_path, capsys):
    injected = "<img src=x onerror=alert(1)><script>alert(1)</script>"
    system = f"{injected} $\\frac{{$ \x1b[2J"
    out_dir, test = renamed_test(test_dir, tmp_path, {"copy": system})
    test["test_id"] = injected
    (tmp_path / "t.key.json").write_text(json.dumps(test))
    scores = {**{k if k != "copy" else system: v for k, v in GOOD.items()}}
    evil = f"\x1b]0;owned\x07\x1b[31m{injected}\u202e"
    paths = write_results(test, tmp_path, {"ann": scores})
    paths.append(tmp_path / "evil.json")
    paths[-1].write_text(json.dumps(synthetic_results(test, evil, {name: 50.0 for name in scores})))
    assert main(["listen", "--analyze", str(out_dir), *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert f"excluded by post-screening: {injected}\n" in out and f"  {injected} $\\frac{{$ " in out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    page = (analysis_dir(out_dir) / "analysis.html").read_text()
    assert "<img src=x" not in page and "<script>alert" not in page and page.count("&lt;img src=x") >= 4


def test_the_test_page_holds_titles_and_names_as_data_only(tmp_path):
    title = "</script><script>alert(1)</script><!--<script>"
    items = [{"id": "i000", "reference": "audio/000/reference.wav", "stimuli": {"s1": {"system": "x", "file": "a</script>.wav"}}}]
    _write_page(tmp_path, "t1", title, items)
    page = (tmp_path / "index.html").read_text()
    config = page.split('<script id="config" type="application/json">')[1].split("</script>")[0]
    assert "<" not in config and json.loads(config)["title"] == title
    assert json.loads(config)["items"][0]["stimuli"] == [{"key": "s1", "file": "a</script>.wav"}]
    assert "<title>&lt;/script&gt;" in page and "<script>alert" not in page


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda r: r["items"][0].update(item=7), "items[0]: an item that does not rate exactly the stimuli"),
        (lambda r: r["items"][0].update(item=["i000"]), "items[0]: an item that does not rate exactly the stimuli"),
        (lambda r: r["items"][0].update(item={"id": "i000"}), "items[0]: an item that does not rate exactly"),
        (lambda r: r["items"][1].update(item=None), "items[1]: an item that does not rate exactly"),
        (lambda r: r["items"][0].update(scores=[1, 2]), "items[0]: an item that does not rate exactly"),
        (lambda r: r["items"].append("i000"), "items[3]: an item that does not rate exactly"),
        (lambda r: r.update(items={"i000": {}}), "'items' must be a list"),
        (lambda r: r.update(listener=["ann"]), "no listener name"),
        (lambda r: r.update(listener="a" * 201), "listener name is longer than 200 characters"),
        (lambda r: r.update(test_id=["x"]), "results of another test"),
    ],
)
def test_results_of_the_wrong_shape_are_one_line_naming_the_file(test_dir, tmp_path, capsys, change, message):
    test = json.loads(key_path(test_dir).read_text())
    result = synthetic_results(test, "ann", GOOD)
    change(result)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(result))
    assert main(["listen", "--analyze", str(test_dir), str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rvqgan listen: error: {path}: ") and message in err and "\n" not in err, err


def test_results_files_are_read_only_up_to_their_bound(test_dir, tmp_path, capsys):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MiB read back as zeros
    tracemalloc.start()
    assert main(["listen", "--analyze", str(test_dir), str(big)]) == 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f"{big}: larger than 16 MiB, too large for a results file" in capsys.readouterr().err
    assert MAX_JSON_BYTES == 16 * 2**20 and peak < 3 * MAX_JSON_BYTES
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # nothing ever writes to it: opening it would wait for ever
    assert main(["listen", "--analyze", str(test_dir), str(fifo)]) == 1
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "key",
    [
        "not json",
        "[]",
        '{"test_id": "x", "title": "t", "systems": ["a"], "items": 5}',
        '{"test_id": "x", "title": "t", "systems": ["a"], "items": [{"id": 1, "domain": "d", "stimuli": {}}]}',
        '{"test_id": "x", "title": "t", "systems": ["a"], "items": [{"id": "i", "domain": "d", "stimuli": {"s": {"system": 3}}}]}',
        '{"test_id": 5, "title": "t", "systems": ["a"], "items": []}',
    ],
)
def test_a_damaged_key_is_one_line_naming_it(tmp_path, capsys, key):
    (tmp_path / "t.key.json").write_text(key)
    (tmp_path / "r.json").write_text("{}")
    assert main(["listen", "--analyze", str(tmp_path / "t"), str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rvqgan listen: error: {tmp_path / 't.key.json'}: not a") and "\n" not in err, err
    (tmp_path / "t.key.json").unlink()
    assert main(["listen", "--analyze", str(tmp_path / "t"), str(tmp_path / "r.json")]) == 1
    assert "no key of the test" in capsys.readouterr().err
