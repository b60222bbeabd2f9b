"""The picture of an explanation (:mod:`dgmix.scoring.explain`): the clip's log-mel spectrogram with
its score map over it, and the map's total over time below; and the explanations a run keeps for
its report (:func:`keep_explanations`: each section's highest-scoring test clips).

Time-mel maps (pooled log-mel detectors) are drawn over the spectrogram in red where a cell
raises the score, with the strongest bands and times marked; time-resolved maps (learned
detectors) leave the spectrogram clear and show their curve in the panel below.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.ndimage import maximum_filter  # noqa: E402

from dgmix.features import FeatureParams, mel_band_edges  # noqa: E402
from dgmix.scoring.explain import Explanation  # noqa: E402

__all__ = ["explanation_figure", "keep_explanations", "read_explanations", "save_explanation"]

_DPI = 80


def explanation_figure(expl: Explanation, params: FeatureParams, title: str) -> Figure:
    """A figure: the clip's log-mel with ``expl``'s map, and the map's curve over time."""
    frames = expl.frames
    n_mels, t = frames.shape
    edges = mel_band_edges(params)
    hop_s = params.hop_length / params.sample_rate
    extent = (0.0, t * hop_s, 0, n_mels)
    fig, (ax, ax_t) = plt.subplots(2, 1, figsize=(7.5, 4.2), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    ax.imshow(frames, origin="lower", aspect="auto", cmap="gray_r", extent=extent, interpolation="nearest")
    curve = expl.map.mean(axis=0) if expl.resolved == "time" else expl.map.sum(axis=0)
    if expl.resolved == "time-mel":
        # for the eye only (the .npy keeps the exact map): each cell shows the largest value around
        # it, so that single frames picked by max or GWRP pooling stay visible at this size
        pos = maximum_filter(np.clip(expl.map, 0.0, None), size=(3, 5))
        top = float(pos.max())
        if top > 0:
            shown = np.ma.masked_less(pos / top, 0.05)
            ax.imshow(shown, origin="lower", aspect="auto", cmap="autumn_r", alpha=0.75, extent=extent,
                      vmin=0.0, vmax=1.0, interpolation="nearest")
        for lo, hi in expl.bands_hz:
            j = int(np.argmin(np.abs(edges[:-2] - lo)))
            ax.axhline(j + 0.5, color="tab:blue", lw=0.8, alpha=0.8)
            ax.annotate(f"{lo:.0f}-{hi:.0f} Hz", (1.0, (j + 0.5) / n_mels), xycoords="axes fraction",
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=7, color="tab:blue")
    for s in expl.times_s:
        ax_t.axvline(s, color="tab:red", lw=0.8, ls="--")
    ax_t.plot((np.arange(t) + 0.5) * hop_s, curve, color="tab:red", lw=1.0)
    ticks = np.linspace(0, n_mels - 1, 5).round().astype(int)
    ax.set_yticks(ticks + 0.5, [f"{edges[j + 1]:.0f}" for j in ticks])
    ax.set_ylabel("Hz (mel scale)", fontsize=8)
    ax_t.set_ylabel("window score" if expl.resolved == "time" else "per frame", fontsize=8)
    ax_t.set_xlabel("time (s)", fontsize=8)
    bands = ", ".join(f"{lo:.0f}-{hi:.0f} Hz" for lo, hi in expl.bands_hz) or "not resolved by band"
    times = ", ".join(f"{s:.2f} s" for s in expl.times_s)
    ax.set_title(f"{title}\nscore {expl.score:.4g} · bands: {bands} · times: {times}", fontsize=8)
    for a in (ax, ax_t):
        a.tick_params(labelsize=7)
    return fig


def save_explanation(path, expl: Explanation, params: FeatureParams, title: str) -> None:  # noqa: ANN001
    """Write the figure of :func:`explanation_figure` to ``path`` (a file or a binary stream) as a PNG."""
    fig = explanation_figure(expl, params, title)
    fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


#: the highest-scoring test clips of each section whose explanations a run keeps for its report
TOP_CLIPS = 3
#: where in ``RUN/<method>/<machine>/`` they go, with their index
EXPLAIN_DIR = "explain"
EXPLAIN_INDEX = "explain.json"


def keep_explanations(folder: Path, md, detector, scores: np.ndarray, p_values: np.ndarray) -> Path:  # noqa: ANN001
    """Explain the :data:`TOP_CLIPS` highest-scoring test clips of each section of ``md`` (a
    ``MachineData``): ``folder/explain/<clip>.png`` and an index ``explain.json`` (section, rank,
    clip, score, p-value, strongest bands and times, PNG name) that the report reads. Returns the
    index's path."""
    from dgmix.io_atomic import atomic_write_text
    from dgmix.scoring.explain import explain_frames

    out = Path(folder) / EXPLAIN_DIR
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for section in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == section]
        top = sorted(idx, key=lambda i: (-float(scores[i]), md.test[i].score_name))[:TOP_CLIPS]
        for rank, i in enumerate(top, start=1):
            expl = explain_frames(detector, md.test_feats[i], section)
            name = Path(md.test[i].score_name).stem
            png = f"{name}.png"
            save_explanation(out / png, expl, detector.params, f"{md.machine} section {section} #{rank}: {name}")
            entries.append({"section": section, "rank": rank, "clip": md.test[i].score_name, "score": expl.score,
                            "p_value": None if not np.isfinite(p_values[i]) else float(p_values[i]),
                            **expl.summary(), "png": png})
    return atomic_write_text(out / EXPLAIN_INDEX, json.dumps(entries, indent=1) + "\n")


def read_explanations(folder: Path) -> list[dict]:
    """The index written by :func:`keep_explanations` in ``folder`` (``RUN/<method>/<machine>``), [] if none."""
    index = Path(folder) / EXPLAIN_DIR / EXPLAIN_INDEX
    if not index.is_file():
        return []
    return json.loads(index.read_text())
