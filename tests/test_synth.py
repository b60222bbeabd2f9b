"""Tests of the synthetic domain-shift data set (``dgmix.synth``; docs/synthetic-data.md).

The central check (``test_domain_shift_hurts_simple_detector``) runs the simplest detector —
log-mel mean+std per clip, 1-NN Euclidean distance to the section's training clips — with librosa
and scikit-learn as independent references, and checks that the target domain is clearly harder
than the source domain (official DCASE 2022 AUC rules). To stay fast it uses 4 s clips and
fewer clips than the default set (12 source / 3 target training clips, 6 test clips per group);
the decision, documented in docs/synthetic-data.md, is to require the gap averaged over all seven
machine types and sections (>= 0.1), and per machine type only that AUC(source) > AUC(target):
with 6 clips per group a single machine type's AUC moves by about +-0.1 between seeds.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from dgmix.cli.synth import register
from dgmix.errors import InputError
from dgmix.synth import MACHINES, SynthConfig, generate, model, plan, render_clip

librosa = pytest.importorskip("librosa")
sklearn_metrics = pytest.importorskip("sklearn.metrics")
sklearn_neighbors = pytest.importorskip("sklearn.neighbors")

NAME = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_(?P<index>\d{4})_(?P<attrs>[^_]+_[^_]+(?:_[^_]+_[^_]+)*)\.wav$"
)
SR = 16000


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _features(paths: list[Path]) -> np.ndarray:
    """Log-mel mean and std over time per clip (the simplest detector's clip feature).

    One batched ``librosa.feature.melspectrogram`` call for all clips (same length).
    """
    y = np.stack([sf.read(p, dtype="float32")[0] for p in paths])
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128,
                                         power=2.0)
    logmel = 10.0 * np.log10(mel + sys.float_info.epsilon)
    return np.concatenate([logmel.mean(axis=-1), logmel.std(axis=-1)], axis=-1)


def _section_aucs(root: Path, machine: str, section: str) -> tuple[float, float, float]:
    """AUC(source), AUC(target), pAUC of the 1-NN detector for one section (evaluator rules)."""
    train = sorted((root / machine / "train").glob(f"section_{section}_*.wav"))
    gt = f"ground_truth_{machine}_section_{section}_test.csv"
    labels = {r[0]: int(r[1]) for r in _read_csv(root / "ground_truth_data" / gt)}
    domains = {r[0]: int(r[1]) for r in _read_csv(root / "ground_truth_domain" / gt)}
    names = sorted(labels)
    feats = _features(train + [root / machine / "test" / n for n in names])
    bank, test = feats[: len(train)], feats[len(train):]
    nn = sklearn_neighbors.NearestNeighbors(n_neighbors=1).fit(bank)
    score = nn.kneighbors(test)[0][:, 0]
    y = np.array([labels[n] for n in names])
    tgt = np.array([domains[n] for n in names])
    src_mask = (tgt == 0) | (y == 1)  # source normals + all anomalies
    tgt_mask = (tgt == 1) | (y == 1)  # target normals + all anomalies
    auc_s = sklearn_metrics.roc_auc_score(y[src_mask], score[src_mask])
    auc_t = sklearn_metrics.roc_auc_score(y[tgt_mask], score[tgt_mask])
    pauc = sklearn_metrics.roc_auc_score(y, score, max_fpr=0.1)
    return float(auc_s), float(auc_t), float(pauc)


@pytest.fixture(scope="module")
def shift_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig]:
    cfg = SynthConfig(train_source=12, train_target=3, test_per_group=6, duration=4.0, seed=0)
    out = tmp_path_factory.mktemp("synth_shift")
    generate(out, cfg, workers=1, progress=False)
    return out / "dev_data", cfg


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig]:
    cfg = SynthConfig(machines=("fan", "ToyCar", "valve"), sections=("00", "02"),
                      train_source=3, train_target=2, test_per_group=2, duration=1.0, seed=7)
    out = tmp_path_factory.mktemp("synth_small")
    generate(out, cfg, workers=1, progress=False)
    return out / "dev_data", cfg


def test_domain_shift_hurts_simple_detector(shift_set: tuple[Path, SynthConfig]) -> None:
    root, cfg = shift_set
    per_machine = {}
    for machine in cfg.machines:
        rows = [_section_aucs(root, machine, s) for s in cfg.sections]
        per_machine[machine] = np.mean(rows, axis=0)
    table = np.stack(list(per_machine.values()))
    auc_s, auc_t, _ = table.mean(axis=0)
    msg = {m: np.round(v, 3).tolist() for m, v in per_machine.items()}
    # Anomalies are detectable in the source domain, but not trivially ...
    assert 0.75 <= auc_s <= 0.97, msg
    # ... and the target domain (3 training clips, shifted condition) is clearly harder.
    assert auc_s - auc_t >= 0.1, msg
    for machine, (s, t, _) in per_machine.items():
        assert s >= 0.65, (machine, msg)
        assert s > t, (machine, msg)


def test_severity_zero_makes_anomalies_normal(tmp_path: Path) -> None:
    """Control: with severity 0 the 'anomalies' are normal clips, so AUC is near chance.

    (Near, not at, 0.5: AUC(source) counts the target-domain 'anomalies', which score high.)
    """
    cfg = SynthConfig(machines=("fan", "gearbox", "slider"), train_source=12, train_target=3,
                      test_per_group=6, duration=4.0, severity=0.0, seed=0)
    generate(tmp_path, cfg, workers=1, progress=False)
    rows = [_section_aucs(tmp_path / "dev_data", m, s) for m in cfg.machines for s in cfg.sections]
    assert np.mean([r[0] for r in rows]) < 0.7


def test_layout_names_and_audio_format(small_set: tuple[Path, SynthConfig]) -> None:
    root, cfg = small_set
    seen = {}
    for machine in cfg.machines:
        for split in ("train", "test"):
            for path in sorted((root / machine / split).iterdir()):
                m = NAME.match(path.name)
                assert m, path.name
                assert m["split"] == split and m["section"] in cfg.sections
                assert not (split == "train" and m["label"] == "anomaly")
                key = (machine, m["section"], m["domain"], split, m["label"])
                seen.setdefault(key, []).append(int(m["index"]))
                # the attribute string is the section's attributes for that clip
                attrs = model(machine).attribute_string(m["section"], m["domain"], int(m["index"]))
                assert m["attrs"] == attrs
    for (_machine, _section, domain, split, label), idx in seen.items():
        assert sorted(idx) == list(range(cfg.count(domain, split, label)))
    expected_groups = len(cfg.machines) * len(cfg.sections) * 6
    assert len(seen) == expected_groups
    info = sf.info(next((root / "fan" / "train").iterdir()))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (
        SR, 1, "PCM_16", "WAV")
    assert info.frames == round(cfg.duration * SR)


def test_ground_truth_and_attributes_match_names(small_set: tuple[Path, SynthConfig]) -> None:
    root, cfg = small_set
    for machine in cfg.machines:
        for section in cfg.sections:
            tests = sorted(p.name for p in (root / machine / "test").glob(f"section_{section}_*"))
            gt = f"ground_truth_{machine}_section_{section}_test.csv"
            for kind, field, positive in (("ground_truth_data", "label", "anomaly"),
                                          ("ground_truth_domain", "domain", "target")):
                rows = _read_csv(root / kind / gt)
                names = [r[0] for r in rows]
                assert names == tests  # every test clip, sorted, no header
                for name, value in rows:
                    assert value == str(int(NAME.match(name)[field] == positive))
            rows = _read_csv(root / machine / f"attributes_{section}.csv")
            header, body = rows[0], rows[1:]
            n_pairs = (len(header) - 1) // 2
            assert header == ["file_name"] + [f"d{i}{x}" for i in range(1, n_pairs + 1)
                                              for x in ("p", "v")]
            files = sorted(f"{machine}/{split}/{p.name}" for split in ("train", "test")
                           for p in (root / machine / split).glob(f"section_{section}_*"))
            assert sorted(r[0] for r in body) == files
            for r in body:
                attrs = NAME.match(r[0].rsplit("/", 1)[1])["attrs"]
                pairs = [x for x in r[1:] if x]
                assert "_".join(pairs) == attrs


def test_deterministic_and_independent_of_workers_and_counts(tmp_path: Path) -> None:
    cfg = SynthConfig(machines=("bearing", "slider"), sections=("01",), train_source=2,
                      train_target=1, test_per_group=1, duration=1.0, seed=3)
    generate(tmp_path / "a", cfg, workers=1, progress=False)
    generate(tmp_path / "b", cfg, workers=2, progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b and len(files_a) > 10
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # More clips: the clips both sets have are byte-identical (per-clip seeds).
    bigger = SynthConfig(machines=("bearing",), sections=("01",), train_source=3,
                         train_target=1, test_per_group=2, duration=1.0, seed=3)
    generate(tmp_path / "c", bigger, workers=1, progress=False)
    wavs = [p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "dev_data" / "bearing")
            .rglob("*.wav")]
    for rel in wavs:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "c" / rel).read_bytes(), rel
    # Another seed gives other audio.
    other = SynthConfig(machines=("bearing",), sections=("01",), train_source=2,
                        train_target=1, test_per_group=1, duration=1.0, seed=4)
    spec = plan(other)[0]
    assert not np.array_equal(render_clip(spec, cfg), render_clip(spec, other))


def _f0_estimate(x: np.ndarray, lo: float, hi: float) -> float:
    """Fundamental by harmonic summation of the power spectrum (first 4 harmonics)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / SR)
    cands = np.arange(lo, hi, 0.1)
    total = sum(np.interp(k * cands, freqs, spec) for k in range(1, 5))
    return float(cands[np.argmax(total)])


@pytest.mark.parametrize("volts", [28.0, 40.0])
def test_toycar_pitch_follows_voltage(volts: float) -> None:
    mdl = model("ToyCar")
    attrs = {"car": "A1", "spd": f"{volts:g}V", "mic": "1", "noise": "1"}
    x = mdl.render(np.random.default_rng(1), 4 * SR, SR, "00", attrs)
    f0 = _f0_estimate(x, 150.0, 700.0)
    assert f0 == pytest.approx(10.5 * volts, rel=0.02)


def test_fan_blade_pass_line() -> None:
    mdl = model("fan")
    x = mdl.render(np.random.default_rng(2), 4 * SR, SR, "02", {"rpm": "1440"})
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1.0 / SR)
    band = (freqs > 60) & (freqs < 1000)
    peak = freqs[band][np.argmax(spec[band])]
    blades = mdl.blades[2]
    assert peak == pytest.approx(blades * 1440 / 60, rel=0.01)


def test_bearing_outer_race_defect_shows_in_envelope_spectrum() -> None:
    """The outer-race anomaly is an impulse train at 3.57 x shaft rate (classic envelope test).

    At the default severity the defect is subtle (about 20 dB below the rolling noise in the
    resonance band), so the structure is checked at severity 4.
    """
    from scipy.signal import butter, hilbert, sosfiltfilt

    mdl = model("bearing")
    attrs = {"vel": "6", "loc": "A"}
    bpfo = 3.57 * 2.0 * 6
    sos = butter(4, [2400.0, 3200.0], btype="bandpass", fs=SR, output="sos")
    ratios = {}
    for anomaly in (None, "outer"):
        x = mdl.render(np.random.default_rng(5), 4 * SR, SR, "00", attrs,
                       anomaly=anomaly, severity=4.0)
        env = np.abs(hilbert(sosfiltfilt(sos, x)))
        spec = np.abs(np.fft.rfft(env - env.mean()))
        freqs = np.fft.rfftfreq(env.size, 1.0 / SR)
        near = np.abs(freqs - bpfo) < 1.0
        ref = (freqs > 5) & (freqs < 200) & ~near
        ratios[anomaly] = spec[near].max() / np.median(spec[ref])
    assert ratios["outer"] > 6.0
    assert ratios["outer"] > 2.5 * ratios[None]


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"machines": ("drill",)}, "--machines"),
        ({"machines": ()}, "--machines"),
        ({"sections": ("07",)}, "--sections"),
        ({"sections": ("x1",)}, "--sections"),
        ({"train_source": 0}, "--train-source"),
        ({"train_target": 2.5}, "--train-target"),
        ({"test_per_group": -1}, "--test-per-group"),
        ({"duration": 0.1}, "--duration"),
        ({"severity": -1.0}, "--severity"),
        ({"seed": -5}, "--seed"),
    ],
)
def test_config_validation(kwargs: dict, option: str) -> None:
    with pytest.raises(InputError) as err:
        SynthConfig(**kwargs)
    assert err.value.path == option
    assert "\n" not in str(err.value)


def test_config_normalises_lists() -> None:
    cfg = SynthConfig(machines=("FAN,valve", "fan"), sections=("2", "00"))
    assert cfg.machines == ("fan", "valve")
    assert cfg.sections == ("00", "02")
    assert SynthConfig().machines == MACHINES


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        """Test app."""

    register(app)
    return app


def test_cli_writes_set_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["synth", str(tmp_path), "--machines", "fan,valve", "--machines", "gearbox",
            "--sections", "01", "--train-source", "2", "--train-target", "1",
            "--test-per-group", "1", "--duration", "1", "--no-progress"]
    res = runner.invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and re.match(r"^wrote 21 clips \(21 s of audio\) .* clips/s", lines[0])
    for machine in ("fan", "valve", "gearbox"):
        assert len(list((tmp_path / "dev_data" / machine / "train").glob("*.wav"))) == 3
        assert (tmp_path / "dev_data" / machine / "attributes_01.csv").is_file()
    # Writing again into the same folder needs --overwrite.
    res = runner.invoke(_cli(), args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(_cli(), [*args, "--overwrite"])
    assert res.exit_code == 0, res.output


def test_cli_rejects_unknown_machine(tmp_path: Path) -> None:
    res = CliRunner().invoke(_cli(), ["synth", str(tmp_path), "--machines", "drill"])
    assert res.exit_code == 2
    assert "--machines" in res.output and "drill" in res.output
    assert not (tmp_path / "dev_data").exists()
