"""Machine-model base: :class:`MachineModel`, section specs, per-clip conditions and presets.

:class:`SectionSpec` holds a section's attribute keys and per-domain values; :class:`Cond` is the
recording condition of one clip (unit, attributes, microphone, background, level), drawn by
:meth:`MachineModel.condition` from the factory background presets :data:`NOISES` and the
microphone positions :data:`MICS`. :meth:`MachineModel.render` is the per-clip entry point; each
machine type's subclass (in :mod:`dgmix.synth.rotating`, :mod:`dgmix.synth.cyclic`,
:mod:`dgmix.synth.toys`) supplies :meth:`MachineModel.machine_sound`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from dgmix.synth.recording import Background, Mic, record

#: Machine-sound RMS (dBFS) before the microphone gain.
LEVEL_DB = -24.0

#: Factory background presets (noise types).
NOISES: dict[str, Background] = {
    "A": Background(colour=1.0, hum_hz=50.0, hum_db=-8.0, clank_rate=0.2, clank_db=4.0),
    "B": Background(colour=1.3, band_hz=600.0, band_db=6.0, hum_hz=50.0, hum_db=-6.0, clank_rate=0.3, clank_db=6.0),
    "C": Background(colour=2.0, band_hz=2500.0, band_db=12.0, hum_hz=60.0, hum_db=0.0, clank_rate=0.6, clank_db=6.0),
    "D": Background(colour=0.4, band_hz=1200.0, band_db=9.0, hum_hz=60.0, hum_db=-3.0, clank_rate=0.5, clank_db=6.0),
}
#: Microphone positions.
MICS: dict[str, Mic] = {
    "1": Mic(),
    "2": Mic(gain_db=-4.0, tilt_db_oct=-2.5, reflect_ms=1.3, reflect_gain=0.6, lowpass_hz=5000.0),
    "3": Mic(gain_db=-6.0, tilt_db_oct=1.5, reflect_ms=0.6, reflect_gain=0.5, highpass_hz=300.0),
}


@dataclass(frozen=True)
class SectionSpec:
    """Attributes of one section: keys (in file-name order) and per-domain value tuples.

    Clip ``i`` of a domain gets value tuple ``i mod len(values)`` of that domain.
    """

    keys: tuple[str, ...]
    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]
    shift: str

    def attributes(self, domain: str, index: int) -> dict[str, str]:
        """Attributes (key -> value, file-name order) of clip ``index`` of ``domain`` ("source" or "target")."""
        vals = self.source if domain == "source" else self.target
        return dict(zip(self.keys, vals[index % len(vals)], strict=True))


@dataclass(frozen=True)
class Cond:
    """Per-clip condition: section unit, attributes and the recording chain."""

    unit: int
    attrs: dict
    mic: Mic
    bg: Background
    level_db: float


class MachineModel:
    """Base class: recording chain, jitter and the public per-clip entry point :meth:`render`."""

    name: str = ""
    anomaly_kinds: tuple[str, ...] = ()
    sections: tuple[SectionSpec, SectionSpec, SectionSpec]
    #: SNR (dB) of each section's unit, 00..05 (the noise level differs by section).
    snr_db: tuple[float, ...] = (10.0, 8.0, 6.0, 9.0, 7.0, 5.0)
    #: Machine-sound RMS (dBFS) at the reference microphone.
    level_db: float = LEVEL_DB
    #: Background preset of each unit unless the attributes choose one.
    unit_noise: tuple[str, ...] = ("A", "B", "A", "B", "A", "B")
    #: Attribute value -> noise preset / SNR offset, for keys that select the background.
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {}
    snr_keys: ClassVar[dict[str, dict[str, float]]] = {}
    mic_keys: ClassVar[dict[str, dict[str, Mic]]] = {"mic": MICS}
    #: Base jitter of normal clips (std): relative speed, level (dB), SNR (dB), harmonic amps.
    speed_jitter = 0.004
    level_jitter = 0.4
    snr_jitter = 1.0
    amp_jitter = 0.08

    def spec(self, section: str | int) -> SectionSpec:
        """The :class:`SectionSpec` of ``section`` (sections 03-05 reuse 00-02's shift)."""
        return self.sections[int(section) % 3]

    def attributes(self, section: str | int, domain: str, index: int) -> dict[str, str]:
        """Attributes of clip ``index`` of ``domain`` in ``section``."""
        return self.spec(section).attributes(domain, index)

    def attribute_string(self, section: str | int, domain: str, index: int) -> str:
        """The ``<attrs>`` part of the file name, e.g. ``"m-n_W"``."""
        return "_".join(f"{k}_{v}" for k, v in self.attributes(section, domain, index).items())

    def anomaly_kind(self, section: str | int, index: int) -> str:
        """Kind of anomaly of anomalous clip ``index`` (kinds taken in turn)."""
        return self.anomaly_kinds[(index + int(section)) % len(self.anomaly_kinds)]

    def condition(self, rng: np.random.Generator, section: str | int, attrs: dict[str, str]) -> Cond:
        """Recording condition of one clip: mic, background, level, with per-clip jitter.

        Both domains have the same jitter: the few target training clips alone make the
        target domain clearly harder.
        """
        unit = int(section)
        noise = _lookup(self.noise_keys, attrs, self.unit_noise[unit])
        snr = self.snr_db[unit] + _lookup(self.snr_keys, attrs, 0.0) + rng.normal(0.0, self.snr_jitter)
        mic = _lookup(self.mic_keys, attrs, MICS["1"])
        level = self.level_db + rng.normal(0.0, self.level_jitter)
        return Cond(unit, dict(attrs), mic, replace(NOISES[noise], snr_db=float(snr)), float(level))

    def render(
        self, rng: np.random.Generator, n: int, sr: int, section: str | int, attrs: dict[str, str],
        anomaly: str | None = None, severity: float = 1.0,
    ) -> np.ndarray:
        """Render one recorded clip (float32, ``n`` samples at ``sr``).

        Args:
            rng: The clip's own generator (everything random in the clip comes from it).
            section: Section ("00".."05").
            attrs: The clip's attributes (from :meth:`attributes`); they set the condition. Source
                and target domain differ only by them (same jitter in both).
            anomaly: ``None`` for a normal clip, else one of :attr:`anomaly_kinds`.
            severity: Multiplies the anomaly strength (1 = default).
        """
        if anomaly is not None and anomaly not in self.anomaly_kinds:
            raise ValueError(f"{self.name}: unknown anomaly kind {anomaly!r}")
        cond = self.condition(rng, section, attrs)
        x, noises = self.machine_sound(rng, n, sr, cond, anomaly, float(severity))
        return record(rng, x, sr, cond.mic, cond.bg, cond.level_db, noises)

    def machine_sound(
        self, rng: np.random.Generator, n: int, sr: int, cond: Cond, anomaly: str | None, sev: float
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        """The machine's own sound, any level (:func:`record` sets it).

        Returns:
            ``(x, noises)``: the time-domain part (float32, ``n`` samples) and stationary noise
            bands ``(magnitude shape, rms)`` that :func:`record` adds in the frequency domain.
        """
        raise NotImplementedError

    # helpers --------------------------------------------------------------------------------

    def _amps(self, rng: np.random.Generator, amps: np.ndarray) -> np.ndarray:
        return amps * (1.0 + rng.normal(0.0, self.amp_jitter, amps.shape))


def _lookup(tables: dict[str, dict], attrs: dict[str, str], default):
    """``tables[key][attrs[key]]`` for the first key of ``tables`` that ``attrs`` has, else ``default``."""
    return next((table[attrs[key]] for key, table in tables.items() if key in attrs), default)


def _nyquist_ok(k: float, f0: float, sr: int) -> bool:
    """Whether line ``k * f0`` lies below 94 % of the Nyquist frequency."""
    return k * f0 < 0.94 * sr / 2


def _r3(x: float) -> float:
    """Round to 3 significant digits (keys of cached wavetables)."""
    return float(f"{x:.3g}")
