"""Figures and detector numbers for docs/synthetic-data.md.

    python scripts/make_synth_figures.py docs/figures              # one PNG per machine type
    python scripts/make_synth_figures.py docs/figures --table DATA  # also the AUC table of DATA

Figures: ``OUTDIR/synth_<machine>.png`` with three log-mel spectrograms (the model's input
features, :func:`dgmix.features.log_mel`) of one section: a source-domain normal clip, a
target-domain normal clip and a source-domain anomalous clip, rendered in memory with the same
per-clip seeds as ``dgmix synth`` (so they are clips of the default set).

``--table DATA`` runs the simplest detector on a generated set (``DATA`` = the ``OUT`` given to
``dgmix synth``, or its ``dev_data``): per clip the log-mel (librosa, n_fft 1024, hop 512, 128
mels, ``10 log10(x + eps)``) mean and std over time; score = Euclidean distance to the nearest
training clip of the same section (both domains); AUC(source), AUC(target) and pAUC by the
official evaluator's rules (SPEC Sec. 8), averaged over sections; prints a Markdown table.

matplotlib (a core dependency, also used by the run report) and librosa (the ``dev`` extra) are
imported here only when the script runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from dgmix.features import log_mel
from dgmix.synth import MACHINES, SynthConfig, model, plan, render_clip


def _clips(machine: str, section: str, seed: int, duration: float):
    cfg = SynthConfig(machines=(machine,), sections=(section,), seed=seed, duration=duration)
    specs = plan(cfg)

    def pick(domain: str, label: str):
        return next(s for s in specs if s.split == "test" and s.domain == domain
                    and s.label == label)

    chosen = [pick("source", "normal"), pick("target", "normal"), pick("source", "anomaly")]
    return cfg, [(s, render_clip(s, cfg)) for s in chosen]


def make_figure(machine: str, outdir: Path, section: str = "00", seed: int = 0,
                duration: float = 10.0, dpi: int = 80) -> Path:
    """Write ``outdir/synth_<machine>.png`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, clips = _clips(machine, section, seed, duration)
    mels = [log_mel(x, cfg.sample_rate) for _, x in clips]
    vmax = max(float(m.max()) for m in mels)
    vmin = vmax - 80.0
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.9), sharey=True)
    titles = []
    for spec, _ in clips:
        what = f"{spec.domain} {spec.label}"
        if spec.anomaly:
            what += f" ({spec.anomaly})"
        titles.append(f"{what}\n{spec.attribute_string}")
    for ax, m, title in zip(axes, mels, titles, strict=True):
        im = ax.imshow(m, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma",
                       extent=(0.0, cfg.duration, 0, m.shape[0]), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mel bin", fontsize=8)
    fig.suptitle(f"{machine}, section {section}: {model(machine).spec(section).shift}",
                 fontsize=8, y=1.08)
    cbar = fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
    cbar.ax.tick_params(labelsize=7)
    cbar.set_label("dB", fontsize=7)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"synth_{machine}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    # A 128-colour palette keeps each PNG well under 150 KB without visible loss.
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


def _read_gt(path: Path) -> dict[str, int]:
    with open(path, newline="") as fh:
        return {row[0]: int(row[1]) for row in csv.reader(fh)}


def detector_table(data: Path) -> str:
    """Markdown table of the 1-NN log-mel mean+std detector on a generated set."""
    import librosa
    import soundfile as sf
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    root = data / "dev_data" if (data / "dev_data").is_dir() else data

    def feats(paths: list[Path]) -> np.ndarray:
        y = np.stack([sf.read(p, dtype="float32")[0] for p in paths])
        mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512,
                                             n_mels=128, power=2.0)
        lm = 10.0 * np.log10(mel + sys.float_info.epsilon)
        return np.concatenate([lm.mean(axis=-1), lm.std(axis=-1)], axis=-1)

    lines = ["| machine | AUC source | AUC target | pAUC | sections |",
             "|---|---|---|---|---|"]
    rows_all = []
    for machine in MACHINES:
        pattern = f"ground_truth_{machine}_section_*_test.csv"
        gts = sorted((root / "ground_truth_data").glob(pattern))
        rows = []
        for gt in gts:
            section = gt.stem.split("_section_")[1].split("_")[0]
            labels = _read_gt(gt)
            domains = _read_gt(root / "ground_truth_domain" / gt.name)
            names = sorted(labels)
            train = sorted((root / machine / "train").glob(f"section_{section}_*.wav"))
            f = feats(train + [root / machine / "test" / n for n in names])
            nn = NearestNeighbors(n_neighbors=1).fit(f[: len(train)])
            score = nn.kneighbors(f[len(train):])[0][:, 0]
            y = np.array([labels[n] for n in names])
            t = np.array([domains[n] for n in names])
            rows.append((roc_auc_score(y[(t == 0) | (y == 1)], score[(t == 0) | (y == 1)]),
                         roc_auc_score(y[(t == 1) | (y == 1)], score[(t == 1) | (y == 1)]),
                         roc_auc_score(y, score, max_fpr=0.1)))
        if not rows:
            continue
        s, t_, p = np.mean(rows, axis=0)
        rows_all.append((s, t_, p))
        lines.append(f"| {machine} | {s:.3f} | {t_:.3f} | {p:.3f} | {len(rows)} |")
    if rows_all:
        s, t_, p = np.mean(rows_all, axis=0)
        lines.append(f"| **mean** | **{s:.3f}** | **{t_:.3f}** | **{p:.3f}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path, help="folder for synth_<machine>.png")
    ap.add_argument("--machines", default=",".join(MACHINES))
    ap.add_argument("--section", default="00")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--dpi", type=int, default=80)
    ap.add_argument("--table", type=Path, default=None,
                    help="generated data set to run the simple detector on")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_figures:
        for machine in args.machines.split(","):
            path = make_figure(machine, args.outdir, args.section, args.seed, args.duration,
                               args.dpi)
            print(f"{path} ({path.stat().st_size // 1024} KB)")
    if args.table is not None:
        print(detector_table(args.table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
