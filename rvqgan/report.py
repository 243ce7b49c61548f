"""A self-contained HTML evaluation report: tables, rate–quality curves, spectrograms, A/B players.

Names in the report come from outside: item and group names are the data folder's file and folder
names, system names come from model file names and the model source. Every one of them is escaped
where it enters the page (`html.escape`) and made plain text where it enters a figure
(`untrusted.for_plot`), so a name can neither inject markup nor break a plot.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from .audio import save_audio
from .untrusted import for_plot

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.best{font-weight:bold}
.ci{color:#777;font-size:11px}figure{margin:1em 0}img{max-width:100%}.item{border-top:1px solid #ddd;padding-top:1em}
.players{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:6px}.players div{font-size:12px}
"""

_SELF_CHECK = """
<script>
window.addEventListener('load', async () => {
  const imgs = [...document.images];
  const badImgs = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const audios = [...document.querySelectorAll('audio')];
  let played = 0, failed = 0;
  for (const a of audios) {
    a.muted = true;
    try { await a.play(); a.pause(); played++; } catch (e) { failed++; console.error('audio failed: ' + e); }
  }
  const el = document.getElementById('selfcheck');
  el.textContent = `images ${imgs.length - badImgs}/${imgs.length} loaded; audio ${played}/${audios.length} played`;
  el.dataset.ok = (badImgs === 0 && failed === 0) ? 'yes' : 'no';
});
</script>
"""


def _png(fig) -> str:
    """A matplotlib figure as a PNG data URI (the page embeds everything), closing the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt  # optional: eval extra

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _flac(audio: np.ndarray, sample_rate: int) -> str:
    """Mono `[T]` audio as a FLAC data URI for an `<audio>` player: lossless and about half the size of WAV."""
    buf = io.BytesIO()
    buf.name = "listen.flac"  # the format follows the name
    save_audio(buf, audio[None], sample_rate)
    return "data:audio/flac;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(stat, digits: int = 3) -> str:
    """A (mean, low, high) interval as a table cell; empty when missing or not finite."""
    if stat is None:
        return ""
    mean, lo, hi = stat
    if mean is None or not np.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} <span class=ci>[{lo:.{digits}f}, {hi:.{digits}f}]</span>"


def _table(summary: dict, scope: str) -> str:
    """One row per system, one column per metric any system has in `scope` ("overall" or a group)."""
    cols = [
        ("kbps_codes", "kbps (codes)", 2),
        ("kbps_file", "kbps (file)", 2),
        ("visqol_audio", "ViSQOL audio ↑", 3),
        ("visqol_speech", "ViSQOL speech ↑", 3),
        ("mel", "mel dist ↓", 3),
        ("stft", "STFT dist ↓", 3),
        ("si_sdr", "SI-SDR dB ↑", 2),
        ("f0_rmse_cents", "F0 error cents ↓", 1),
        ("voicing_error", "voicing error ↓", 3),
        ("waveform_l1", "L1 ↓", 4),
    ]
    present = [c for c in cols if any(scope in e and c[0] in e[scope] for e in summary.values())]
    out = ["<table><tr><th>system</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in present) + "</tr>"]
    for system, entry in summary.items():
        if scope not in entry:
            continue
        cells = "".join(f"<td>{_fmt(entry[scope].get(k), d)}</td>" for k, _, d in present)
        out.append(f"<tr><td>{html.escape(system)}</td>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _curves(summary: dict) -> str:
    """Rate–quality curves (ViSQOL, mel distance, SI-SDR against kbps), one line per family, as figures."""
    import matplotlib  # optional: eval extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: eval extra

    figs = []
    for metric, label in (("visqol_audio", "ViSQOL (audio mode) ↑"), ("mel", "mel distance ↓"), ("si_sdr", "SI-SDR (dB) ↑")):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        families: dict[str, list[tuple[float, tuple[float, float, float]]]] = {}
        for system, entry in summary.items():
            stats = entry.get("overall", {})
            if metric not in stats or "kbps_codes" not in stats:
                continue
            families.setdefault(entry["family"], []).append((stats["kbps_codes"][0], stats[metric]))
        if not families:
            plt.close(fig)
            continue
        for family, points in families.items():
            points.sort()
            x = [p[0] for p in points]
            y = [p[1][0] for p in points]
            err = [[p[1][0] - p[1][1] for p in points], [p[1][2] - p[1][0] for p in points]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=for_plot(family))
        ax.set_xlabel("bitrate (kbps)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs.append(f'<figure><img alt="{html.escape(label)} vs bitrate" src="{_png(fig)}"></figure>')
    return "\n".join(figs)


def _spectrograms(item, recons: dict[str, np.ndarray]) -> str:
    """The reference and every system's reconstruction of one item as a grid of spectrograms, on one colour scale."""
    import matplotlib  # optional: eval extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: eval extra

    signals = [("reference", item.audio), *recons.items()]
    cols = 2
    rows = math.ceil(len(signals) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.2 * rows), squeeze=False)
    for ax, (name, audio) in zip(axes.flat, signals):
        ax.specgram(audio + 1e-7, NFFT=1024, Fs=item.sample_rate, noverlap=768, cmap="magma", vmin=-130, vmax=-20)
        ax.set_title(for_plot(name), fontsize=9)
        ax.set_ylabel("Hz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(signals) :]:
        ax.axis("off")
    fig.tight_layout()
    return f'<figure><img alt="spectrograms of {html.escape(item.name)}" src="{_png(fig)}"></figure>'


def _spectrogram_pair(item, system: str, estimate: np.ndarray) -> str:
    """Reference and one reconstruction side by side: harmonics lost or smeared show at a glance."""
    import matplotlib  # optional: eval extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: eval extra

    fig, axes = plt.subplots(1, 2, figsize=(11, 2.0), sharey=True)
    for ax, (name, audio) in zip(axes, (("reference", item.audio), (system, estimate))):
        ax.specgram(audio + 1e-7, NFFT=1024, Fs=item.sample_rate, noverlap=768, cmap="magma", vmin=-130, vmax=-20)
        ax.set_title(for_plot(f"{item.name}: {name}"), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("Hz", fontsize=8)
    fig.tight_layout()
    return f'<img alt="spectrograms of {html.escape(item.name)}" src="{_png(fig)}">'


def write_report(path, result: dict, rows: list[dict], recons: dict, pairs: dict | None = None) -> None:
    """Write report.html for `run_evaluation`'s result (figures and audio embedded as data URIs).

    `recons` (item → (item, {system: audio})) get players and all systems' spectrograms;
    `pairs` (item → (item, system, audio)) get a reference/model spectrogram pair each.
    """
    summary = result["summary"]
    groups = list(result["groups"])
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>rvqgan evaluation</title><style>{_CSS}</style></head><body>",
        "<h1>rvqgan evaluation</h1>",
        f"<p>Model <code>{html.escape(result['model'])}</code> on <code>{html.escape(result['data'])}</code>: "
        f"{result['n_items']} items ({html.escape(', '.join(f'{g}: {n}' for g, n in result['groups'].items()))}), excerpts of at most "
        f"{result['seconds']:g} s. Means with 95 % bootstrap confidence intervals. <span id=selfcheck>checking…</span></p>",
        "<h2>Overall</h2>",
        _table(summary, "overall"),
    ]
    for g in groups:
        parts += [f"<h2>{html.escape(g)}</h2>", _table(summary, g)]
    parts += ["<h2>Rate–quality curves</h2>", _curves(summary)]
    comps = [c for c in result["comparisons"] if c["scope"] == "overall"]
    if comps:
        parts.append(
            "<h2>Paired comparisons (model − baseline, same items)</h2><table><tr><th>model</th><th>baseline</th>"
            "<th>metric</th><th>n</th><th>mean difference [95 % CI]</th><th>interval excludes 0</th></tr>"
        )
        for c in comps:
            parts.append(
                f"<tr><td>{html.escape(c['a'])}</td><td>{html.escape(c['b'])}</td><td>{html.escape(c['metric'])}</td><td>{c['n']}</td>"
                f"<td>{_fmt((c['mean_diff'], c['ci_low'], c['ci_high']))}</td><td>{'yes' if c['excludes_zero'] else 'no'}</td></tr>"
            )
        parts.append("</table>")
    if result.get("codebook_usage"):
        parts.append(
            "<h2>Codebook usage</h2><table><tr><th>system</th><th>bitrate efficiency</th><th>perplexity per codebook</th></tr>"
        )
        for system, u in result["codebook_usage"].items():
            perp = ", ".join(f"{p:.0f}" for p in u["perplexity"])
            parts.append(f"<tr><td>{html.escape(system)}</td><td>{100 * u['efficiency']:.1f} %</td><td>{perp}</td></tr>")
        parts.append("</table>")
    if recons:
        parts.append("<h2>Listen (A/B) and spectrograms</h2>")
        for name, (item, audio) in recons.items():
            players = [("reference", item.audio), *audio.items()]
            parts.append(f"<div class=item><h3>{html.escape(item.group)}: {html.escape(name)}</h3><div class=players>")
            for label, signal in players:
                parts.append(
                    f'<div>{html.escape(label)}<br><audio controls preload=auto src="{_flac(signal, item.sample_rate)}"></audio></div>'
                )
            parts.append("</div>" + _spectrograms(item, audio) + "</div>")
    if pairs:
        parts.append("<h2>Spectrograms of every item (reference | model)</h2><div class=pairs>")
        parts += [_spectrogram_pair(item, system, audio) for item, system, audio in pairs.values()]
        parts.append("</div>")
    parts += [_SELF_CHECK, "</body></html>"]
    with open(path, "w") as f:
        f.write("\n".join(parts))
