"""One sound model per DCASE 2022 machine type, with sections, domains and anomaly kinds.

Each model (a :class:`MachineModel` subclass) knows

* its **sections**: per section, the attribute keys written into the file names and the attribute
  values of the source and of the target domain (:class:`SectionSpec`); the target domain shifts
  one operating or recording condition (speed, load, valve pattern, background noise type or
  level, microphone position);
* how to turn attribute values into physical parameters (speed, load, microphone response,
  factory background, see :mod:`dgmix.synth.sounds`);
* its **anomaly kinds** (at least two per machine type) and how each one alters the sound.

Normal clips within one domain still vary: random start phases, a small speed offset and drift,
harmonic amplitude jitter, level and SNR jitter, and a fresh noise realisation. The target domain
has the same kinds of jitter (scaled by :data:`TARGET_SPREAD`, 1 by default) but only a few
training clips, as in DCASE 2022 Task 2 (SPEC Sec. 1): with 3 clips the nuisance variation of the
shifted condition is not covered, which is what makes the target domain hard for a
nearest-neighbour detector.

The models are illustrative, not physical simulations; docs/synthetic-data.md describes them.
Sections 03-05 reuse the shift of section ``XX mod 3`` with another machine unit (different
blade count, gear teeth, resonance, ...), like the DCASE additional-training sections.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dgmix.synth.sounds import (
    ONE_CYCLE,
    Background,
    Mic,
    add_events,
    burst_table,
    damped_kernel,
    gate,
    harmonic_table,
    noise_shape,
    read_table,
    record,
    rotation,
    rotation_from_freq,
    scale_phase,
    shaped_noise,
    sine,
)

#: Machine types in DCASE 2022 order; the index of a name here enters the per-clip seeds.
MACHINES: tuple[str, ...] = ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")
#: Sections a model can render (00-02 development, 03-05 additional training units).
SECTIONS: tuple[str, ...] = ("00", "01", "02", "03", "04", "05")
#: Factor on the within-domain jitter of the target domain (1 = same as the source domain; the
#: few target training clips alone already make the target domain clearly harder).
TARGET_SPREAD = 1.0
#: Machine-sound RMS (dBFS) before the microphone gain.
LEVEL_DB = -24.0

#: Factory background presets (noise types).
NOISES: dict[str, Background] = {
    "A": Background(colour=1.0, hum_hz=50.0, hum_db=-8.0, clank_rate=0.2, clank_db=4.0),
    "B": Background(colour=1.3, band_hz=600.0, band_db=6.0, hum_hz=50.0, hum_db=-6.0,
                    clank_rate=0.3, clank_db=6.0),
    "C": Background(colour=2.0, band_hz=2500.0, band_db=12.0, hum_hz=60.0, hum_db=0.0,
                    clank_rate=0.6, clank_db=6.0),
    "D": Background(colour=0.4, band_hz=1200.0, band_db=9.0, hum_hz=60.0, hum_db=-3.0,
                    clank_rate=0.5, clank_db=6.0),
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

    def values(self, domain: str) -> tuple[tuple[str, ...], ...]:
        """Attribute value tuples of ``domain`` ("source" or "target")."""
        return self.source if domain == "source" else self.target

    def attributes(self, domain: str, index: int) -> dict[str, str]:
        """Attributes (key -> value, file-name order) of clip ``index`` of ``domain``."""
        vals = self.values(domain)
        return dict(zip(self.keys, vals[index % len(vals)], strict=True))


@dataclass(frozen=True)
class Cond:
    """Per-clip condition: section unit, jitter scale, attributes and the recording chain."""

    unit: int
    spread: float
    attrs: dict
    mic: Mic
    bg: Background
    level_db: float


def _attr_string(attrs: dict[str, str]) -> str:
    return "_".join(f"{k}_{v}" for k, v in attrs.items())


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
        return _attr_string(self.attributes(section, domain, index))

    def anomaly_kind(self, section: str | int, index: int) -> str:
        """Kind of anomaly of anomalous clip ``index`` (kinds taken in turn)."""
        return self.anomaly_kinds[(index + int(section)) % len(self.anomaly_kinds)]

    def condition(
        self, rng: np.random.Generator, section: str | int, domain: str, attrs: dict[str, str]
    ) -> Cond:
        """Recording condition of one clip: mic, background, level, with per-clip jitter."""
        unit = int(section)
        spread = TARGET_SPREAD if domain == "target" else 1.0
        noise = self.unit_noise[unit % len(self.unit_noise)]
        snr = self.snr_db[unit % len(self.snr_db)]
        mic = MICS["1"]
        for key, table in self.noise_keys.items():
            if key in attrs:
                noise = table[attrs[key]]
        for key, offsets in self.snr_keys.items():
            if key in attrs:
                snr += offsets[attrs[key]]
        for key, mics in self.mic_keys.items():
            if key in attrs:
                mic = mics[attrs[key]]
        bg = NOISES[noise]
        snr += rng.normal(0.0, self.snr_jitter * spread)
        bg = Background(**{**bg.__dict__, "snr_db": float(snr)})
        level = self.level_db + rng.normal(0.0, self.level_jitter * spread)
        return Cond(unit, spread, dict(attrs), mic, bg, float(level))

    def render(
        self,
        rng: np.random.Generator,
        n: int,
        sr: int,
        section: str | int,
        domain: str,
        attrs: dict[str, str],
        anomaly: str | None = None,
        severity: float = 1.0,
    ) -> np.ndarray:
        """Render one recorded clip (float32, ``n`` samples at ``sr``).

        Args:
            rng: The clip's own generator (everything random in the clip comes from it).
            section: Section ("00".."05").
            domain: "source" or "target" (the target domain has larger jitter).
            attrs: The clip's attributes (from :meth:`attributes`); they set the condition.
            anomaly: ``None`` for a normal clip, else one of :attr:`anomaly_kinds`.
            severity: Multiplies the anomaly strength (1 = default).
        """
        if anomaly is not None and anomaly not in self.anomaly_kinds:
            raise ValueError(f"{self.name}: unknown anomaly kind {anomaly!r}")
        cond = self.condition(rng, section, domain, attrs)
        x, noises = self.machine_sound(rng, n, sr, cond, anomaly, float(severity))
        return record(rng, x, sr, cond.mic, cond.bg, cond.level_db, noises)

    def machine_sound(
        self,
        rng: np.random.Generator,
        n: int,
        sr: int,
        cond: Cond,
        anomaly: str | None,
        sev: float,
    ) -> np.ndarray:
        """The machine's own sound, any level (:func:`record` sets it).

        Returns:
            ``(x, noises)``: the time-domain part (float32, ``n`` samples) and stationary noise
            bands ``(magnitude shape, rms)`` that :func:`record` adds in the frequency domain.
        """
        raise NotImplementedError

    # helpers --------------------------------------------------------------------------------

    def _jit(self, rng: np.random.Generator, cond: Cond, std: float) -> float:
        return float(rng.normal(0.0, std * cond.spread))

    def _amps(self, rng: np.random.Generator, cond: Cond, amps: np.ndarray) -> np.ndarray:
        return amps * (1.0 + rng.normal(0.0, self.amp_jitter * cond.spread, amps.shape))


def _nyquist_ok(k: float, f0: float, sr: int, margin: float = 0.94) -> bool:
    return k * f0 < margin * sr / 2


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x, x) / x.shape[0])) + 1e-12


def _r3(x: float) -> float:
    """Round to 3 significant digits (keys of cached wavetables)."""
    return float(f"{x:.3g}")


# ---------------------------------------------------------------------------------------------
# fan
# ---------------------------------------------------------------------------------------------


class Fan(MachineModel):
    """Industrial fan: shaft harmonics, blade-pass lines and aerodynamic broadband noise.

    Shaft rotation ``f_r = rpm / 60`` (unit default 1440 rpm), ``B`` blades (5-7 per unit):
    lines at ``m B f_r`` (``m = 1..``, amplitude ``~1/m^0.9``), weak shaft lines ``k f_r`` and
    aerodynamic band noise around ``700 Hz * f_r / 24`` (1.8 octaves wide).
    Anomalies: ``imbalance`` (strong ``1 f_r`` line and amplitude modulation at ``f_r``),
    ``blade`` (non-blade lines ``(mB +- 1) f_r`` and broadband modulation at ``f_r``),
    ``rub`` (high-frequency friction noise once per revolution).
    """

    name = "fan"
    anomaly_kinds = ("imbalance", "blade", "rub")
    sections = (
        SectionSpec(("m-n",), (("W",), ("X",)), (("Y",), ("Z",)),
                    "background noise type: pink floor / 600 Hz machinery band with 50 Hz hum "
                    "(W, X) -> brown noise with a 2.5 kHz band or a white-ish floor with a "
                    "1.2 kHz band, 60 Hz hum, frequent clanks (Y, Z)"),
        SectionSpec(("n-lv",), (("L1",), ("L2",)), (("L3",), ("L4",)),
                    "background noise level: SNR 0/-2 dB (L1, L2) -> -8/-11 dB (L3, L4) "
                    "relative to the section's SNR"),
        SectionSpec(("rpm",), (("1380",), ("1440",)), (("1740",), ("1800",)),
                    "rotation speed 1380-1440 rpm -> 1740-1800 rpm"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {
        "m-n": {"W": "A", "X": "B", "Y": "C", "Z": "D"}}
    snr_keys: ClassVar[dict[str, dict[str, float]]] = {
        "n-lv": {"L1": 0.0, "L2": -2.0, "L3": -8.0, "L4": -11.0}}
    blades = (5, 6, 7, 5, 7, 6)
    rpm_default = (1440.0, 1200.0, 1680.0, 1320.0, 1560.0, 1080.0)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        u = cond.unit
        rpm = float(cond.attrs.get("rpm", self.rpm_default[u]))
        f_r = rpm / 60.0 * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ph = rotation(rng, n, sr, f_r, drift=0.002 * cond.spread)
        b = self.blades[u]
        harm = []
        shaft = np.array([0.05, 0.03, 0.02])
        blade_m = [m for m in range(1, 40) if _nyquist_ok(m * b * 1.01, f_r, sr)]
        blade = self._amps(rng, cond, np.array([1.0 / m**0.9 for m in blade_m]))
        harm += [(k + 1, a, rng.random() * 6.28) for k, a in enumerate(shaft)]
        harm += [(m * b, a, rng.random() * 6.28) for m, a in zip(blade_m, blade, strict=True)]
        aero_shape = noise_shape(n, sr, (1.0, 700.0 * f_r / 24.0, 1.8, 0.5))
        aero_am = 0.0
        tone_am = 0.0
        if anomaly == "imbalance":
            harm.append((1, 0.45 * sev, 0.0))
            tone_am = 0.3 * sev
        elif anomaly == "blade":
            for m in (1, 2):
                for d in (-1, 1):
                    harm.append((m * b + d, 0.14 * sev * rng.uniform(0.6, 1.0), rng.random() * 6))
            aero_am = 0.5 * sev
        tonal = read_table(harmonic_table(harm), ph)
        tonal /= _rms(tonal)
        rev = sine(ph)
        if tone_am:
            tonal *= 1.0 + tone_am * rev
        noises = []
        if anomaly == "blade":
            # Blade damage makes the air flow pulse once per revolution.
            aero = shaped_noise(rng, n, aero_shape)
            aero *= 1.0 + aero_am * rev
            x = tonal + 0.8 * aero
        else:
            # (The blade-pass pulsation of the flow, > 100 Hz, is far faster than what log-mel
            # frames resolve; the aerodynamic noise is treated as stationary.)
            x = tonal
            noises.append((aero_shape, 0.8))
        if anomaly == "rub":
            rub = shaped_noise(rng, n, noise_shape(n, sr, (1.0, 5000.0, 0.4, 0.0)))
            env = np.maximum(rev, 0.0) ** 4
            x += (0.9 * sev) * rub * env
        return x, noises


# ---------------------------------------------------------------------------------------------
# gearbox
# ---------------------------------------------------------------------------------------------


class Gearbox(MachineModel):
    """DC-motor-driven gearbox: gear-mesh lines with shaft-rate sidebands, load-dependent.

    Input shaft ``f_s = 12 Hz * volt`` (slowed slightly by the load ``wt``), ``Z`` teeth (21-33
    per unit): mesh lines ``m Z f_s`` with sidebands ``(m Z +- 1, 2) f_s`` growing with load,
    weak motor lines, low-frequency rumble. Anomalies: ``tooth`` (a broken tooth: a burst once
    per revolution), ``wear`` (stronger mesh harmonics 2-3 and sidebands), ``misalign``
    (modulation of the mesh at ``2 f_s``).
    """

    name = "gearbox"
    anomaly_kinds = ("tooth", "wear", "misalign")
    sections = (
        SectionSpec(("volt", "wt"), (("1.0", "30"), ("1.3", "30")), (("1.8", "30"), ("2.0", "30")),
                    "motor voltage (speed) 1.0-1.3 V -> 1.8-2.0 V"),
        SectionSpec(("volt", "wt"), (("1.5", "0"), ("1.5", "30")), (("1.5", "150"), ("1.5", "180")),
                    "load weight 0-30 g -> 150-180 g"),
        SectionSpec(("volt", "wt", "mic"), (("1.5", "50", "1"), ("1.5", "80", "1")),
                    (("1.5", "50", "2"), ("1.5", "80", "2")),
                    "microphone position 1 -> 2 (farther, duller, wall reflection)"),
    )
    teeth = (24, 30, 27, 21, 33, 26)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        volt = float(cond.attrs.get("volt", "1.5"))
        wt = float(cond.attrs.get("wt", "30"))
        load = wt / 200.0
        f_s = 12.0 * volt * (1.0 - 0.0006 * wt) * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ph = rotation(rng, n, sr, f_s, drift=0.003 * cond.spread)
        z = self.teeth[cond.unit]
        mesh = self._amps(rng, cond, np.array([(0.6 + 0.8 * load) / m for m in range(1, 6)]))
        sb1, sb2 = 0.12 * (1.0 + load), 0.05 * (1.0 + load)
        if anomaly == "wear":
            mesh[1:3] *= 1.0 + 1.1 * sev
            sb1, sb2 = sb1 * (1.0 + 2.0 * sev), sb2 * (1.0 + 3.0 * sev)
        harm = [(1, 0.05, rng.random() * 6), (2, 0.04, rng.random() * 6)]
        for m, a in enumerate(mesh, start=1):
            if not _nyquist_ok(m * z + 3, f_s * 1.05, sr):
                continue
            harm.append((m * z, a, rng.random() * 6.28))
            for d, s in ((1, sb1), (2, sb2)):
                harm.append((m * z - d, a * s, rng.random() * 6.28))
                harm.append((m * z + d, a * s, rng.random() * 6.28))
        if anomaly == "wear":
            for m in (1, 2):
                harm.append((m * z + 3, 0.08 * sev, rng.random() * 6))
                harm.append((m * z - 3, 0.08 * sev, rng.random() * 6))
        tonal = read_table(harmonic_table(harm), ph)
        tonal /= _rms(tonal)
        if anomaly == "misalign":
            tonal *= 1.0 + 0.45 * sev * sine(scale_phase(ph, 2))
        rumble = noise_shape(n, sr, (1.0, 300.0, 2.0, 0.0), (0.3, 3000.0, 1.0, 0.0))
        x = tonal
        if anomaly == "tooth":
            res = 2200.0 + 150.0 * cond.unit
            tab = burst_table(sr, _r3(f_s), (res, 1.45 * res), 0.003)
            x += (0.9 * sev) * read_table(tab, ph)
        return x, [(rumble, 0.35 + 0.3 * load)]


# ---------------------------------------------------------------------------------------------
# bearing
# ---------------------------------------------------------------------------------------------


class Bearing(MachineModel):
    """Rolling bearing on a rotating shaft: shaft harmonics, rolling noise, defect impulses.

    Shaft ``f_s = 2 Hz * vel``; weak shaft harmonics; broadband rolling noise around the housing
    resonance ``f_res`` (2.5-4.1 kHz per unit, louder with speed) plus low rumble. Defects excite
    the resonance with impulse trains: ``outer`` (outer race,
    ``3.57 f_s``, constant), ``inner`` (inner race, ``5.43 f_s``, modulated once per turn),
    ``ball`` (rolling element, ``4.6 f_s``, plus a rougher, wider noise band).
    """

    name = "bearing"
    anomaly_kinds = ("outer", "inner", "ball")
    sections = (
        SectionSpec(("vel", "loc"), (("6", "A"), ("8", "A")), (("14", "A"), ("16", "A")),
                    "shaft velocity 6-8 -> 14-16 (x2.2 speed)"),
        SectionSpec(("vel", "loc"), (("10", "A"), ("10", "B")), (("10", "E"), ("10", "F")),
                    "microphone location A/B -> E/F (quieter, filtered, reflections)"),
        SectionSpec(("vel", "loc", "f-n"), (("10", "A", "A"), ("12", "A", "A")),
                    (("10", "A", "C"), ("12", "A", "C")),
                    "factory noise type A (pink) -> C (brown + 2.5 kHz band, clanks)"),
    )
    mic_keys: ClassVar[dict[str, dict[str, Mic]]] = {
        "loc": {
            "A": MICS["1"],
            "B": Mic(gain_db=-1.0, reflect_ms=0.35, reflect_gain=0.25),
            "E": Mic(gain_db=-6.0, tilt_db_oct=-2.5, reflect_ms=1.7, reflect_gain=0.55,
                     lowpass_hz=4000.0),
            "F": Mic(gain_db=-5.0, tilt_db_oct=1.5, reflect_ms=0.9, reflect_gain=0.5,
                     highpass_hz=250.0),
        }
    }
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"f-n": {k: k for k in "ABCD"}}
    resonance = (2800.0, 3400.0, 4100.0, 3000.0, 3700.0, 2500.0)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        vel = float(cond.attrs.get("vel", "10"))
        f_s = 2.0 * vel * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ph = rotation(rng, n, sr, f_s, drift=0.002 * cond.spread)
        f_res = self.resonance[cond.unit]
        shaft = self._amps(rng, cond, np.array([0.3, 0.15, 0.1, 0.06, 0.04, 0.03]))
        tonal = read_table(harmonic_table(
            [(k + 1, a, rng.random() * 6.28) for k, a in enumerate(shaft)]), ph)
        speed_gain = (vel / 10.0) ** 0.5
        terms = [(speed_gain, f_res, 0.6, 0.0), (0.8, 150.0, 1.5, 1.0)]
        if anomaly == "ball":
            terms.append((0.15 * sev * speed_gain, 1.3 * f_res, 1.2, 0.0))
        roll = noise_shape(n, sr, *terms)
        x = 0.4 * tonal
        if anomaly is not None:
            ratio = {"outer": 3.57, "inner": 5.43, "ball": 4.6}[anomaly]
            amp = {"outer": 1.2, "inner": 3.5, "ball": 0.4}[anomaly] * sev * speed_gain
            tab = burst_table(sr, _r3(ratio * f_s), (f_res, 1.6 * f_res), 0.0008)
            imp = read_table(tab, scale_phase(ph, ratio) + int(rng.random() * ONE_CYCLE))
            if anomaly == "inner":
                imp *= (0.5 + 0.5 * sine(ph)) ** 2
            x += amp * imp
        return x, [(roll, 1.0)]


# ---------------------------------------------------------------------------------------------
# valve
# ---------------------------------------------------------------------------------------------

#: Valve open/close patterns: cycle period (s) and (open, close) times as fractions of it.
VALVE_PATTERNS: dict[str, tuple[float, tuple[tuple[float, float], ...]]] = {
    "00": (1.0, ((0.10, 0.45),)),
    "01": (0.8, ((0.05, 0.20), (0.35, 0.55))),
    "02": (1.6, ((0.10, 0.80),)),
    "03": (0.5, ((0.05, 0.22),)),
    "04": (1.2, ((0.05, 0.15), (0.30, 0.40), (0.55, 0.75))),
    "05": (2.0, ((0.05, 0.30), (0.50, 0.55))),
}


class Valve(MachineModel):
    """Solenoid valve: open/close clicks in a repeating pattern, flow hiss while open.

    Pattern ``pat_XX`` (:data:`VALVE_PATTERNS`) sets the cycle; each opening is a click (a
    decaying resonance, 2.4-3.4 kHz per unit, with a low thump), each closing a sharper click; the
    flow hisses (band noise around 3.5 kHz) while open; a pump hums at 29.5 Hz. Event times jitter
    by a few ms. A second valve (``v2pat``) clicks lower and quieter. Anomalies:
    ``contamination`` (louder hiss and a 5.2 kHz whistle while open), ``timing`` (events dropped,
    late or chattering), ``seat`` (damaged seat: lower, longer-ringing clicks).
    """

    name = "valve"
    anomaly_kinds = ("contamination", "timing", "seat")
    sections = (
        SectionSpec(("pat",), (("00",), ("01",)), (("02",), ("03",)),
                    "open/close pattern 00/01 -> 02/03 (other period and duty cycle)"),
        SectionSpec(("v1pat", "v2pat"), (("00", "01"), ("00", "02")), (("00", "04"), ("00", "05")),
                    "pattern of a second valve 01/02 -> 04/05"),
        SectionSpec(("pat", "mic"), (("01", "1"), ("03", "1")), (("01", "3"), ("03", "3")),
                    "microphone position 1 -> 3 (farther, brighter, low cut, reflection)"),
    )
    click_hz = (2600.0, 3000.0, 2400.0, 3400.0, 2800.0, 3200.0)
    level_db = LEVEL_DB - 8.0  # clicks have a high crest factor: keep their peaks below 0 dBFS
    snr_db = (14.0, 12.0, 10.0, 13.0, 11.0, 9.0)

    def _events(self, rng, dur, pattern, spread, anomaly, sev):
        period, windows = VALVE_PATTERNS[pattern]
        start = -rng.random() * period
        opens, closes, extra = [], [], []
        t0 = start
        while t0 < dur:
            for a, b in windows:
                to = t0 + a * period + rng.normal(0.0, 0.004 * spread)
                tc = t0 + b * period + rng.normal(0.0, 0.004 * spread)
                if anomaly == "timing" and rng.random() < min(0.9, 0.5 * sev):
                    kind = rng.integers(0, 3)
                    if kind == 0:  # sticks: opens late
                        to += rng.uniform(0.03, 0.09)
                    elif kind == 1:  # fails to close on time
                        tc += rng.uniform(0.04, 0.12)
                    else:  # chatter: bounces
                        extra += [to + rng.uniform(0.012, 0.03), tc + rng.uniform(0.012, 0.03)]
                opens.append(to)
                closes.append(tc)
            t0 += period
        return opens, closes, extra

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        dur = n / sr
        fc = self.click_hz[cond.unit]
        tau = 0.004
        if anomaly == "seat":
            fc *= 1.0 - 0.25 * min(sev, 2.0)
            tau *= 1.0 + 1.2 * sev
        x = np.zeros(n, dtype=np.float32)
        # Supply pressure differs a little from clip to clip: click strength and flow.
        press = 1.0 + self._jit(rng, cond, 0.12)
        hiss = shaped_noise(rng, n, noise_shape(n, sr, (1.0, 3500.0, 1.0, 0.0)))
        valves = [("pat", 1.0, 1.0)] if "pat" in cond.attrs else [("v1pat", 1.0, 1.0),
                                                                  ("v2pat", 0.6, 0.7)]
        open_gate = np.zeros(n, dtype=np.float32)
        whistle_gate = np.zeros(n, dtype=np.float32)
        for key, gain, fmul in valves:
            opens, closes, extra = self._events(rng, dur, cond.attrs[key], cond.spread,
                                                anomaly, sev)
            k_open = damped_kernel(sr, round(fc * fmul, 1), round(tau, 5), 180.0)
            k_close = damped_kernel(sr, round(1.35 * fc * fmul, 1), round(0.75 * tau, 5), 140.0)
            amp = gain * press * (1.0 + rng.normal(0.0, 0.06 * cond.spread, len(opens)))
            add_events(x, np.round(np.asarray(opens) * sr), k_open, amp)
            add_events(x, np.round(np.asarray(closes) * sr), k_close, 1.2 * amp)
            if extra:
                add_events(x, np.round(np.asarray(extra) * sr), k_open, [0.7 * gain] * len(extra))
            g = gate(n, sr, list(zip(opens, closes, strict=True)))
            open_gate += gain * g
            if key != "v2pat":
                whistle_gate += g
        hiss_gain = 0.08 * press**2 * (1.0 + (1.5 * sev if anomaly == "contamination" else 0.0))
        x += hiss_gain * hiss * open_gate
        if anomaly == "contamination":
            ph = rotation(rng, n, sr, 5200.0 + 200.0 * cond.unit, drift=0.004)
            x += (0.06 * sev) * sine(ph) * whistle_gate
        pump = harmonic_table([(k, 0.02 / k, rng.random() * 6.28) for k in range(1, 7)])
        x += read_table(pump, rotation(rng, n, sr, 29.5, drift=0.002))
        return x, []


# ---------------------------------------------------------------------------------------------
# slider
# ---------------------------------------------------------------------------------------------


class Slider(MachineModel):
    """Linear slide rail: reciprocating strokes with a trapezoidal speed profile.

    Velocity ``vel`` (mm/s) and acceleration ``ac`` (ramp time ``0.006 / ac`` s) set the profile
    ``v(t)`` of strokes over 0.12 m with 0.25 s dwell at each end. The servo whine's pitch
    follows ``v(t)`` (``f_max = 700 Hz * vel / 300``), rolling noise scales with ``v``, and a knock
    marks each stop. Anomalies: ``rail`` (a click at a damaged spot in every pass),
    ``lubrication`` (friction squeal ~4.2 kHz growing with speed), ``stall`` (speed dips within
    strokes and a load flutter on the whine).
    """

    name = "slider"
    anomaly_kinds = ("rail", "lubrication", "stall")
    sections = (
        SectionSpec(("vel", "ac"), (("300", "0.05"), ("350", "0.05")),
                    (("600", "0.05"), ("700", "0.05")),
                    "velocity 300-350 mm/s -> 600-700 mm/s"),
        SectionSpec(("vel", "ac"), (("400", "0.03"), ("400", "0.05")),
                    (("400", "0.2"), ("400", "0.3")),
                    "acceleration 0.03-0.05 -> 0.2-0.3 (short ramps, harder stops)"),
        SectionSpec(("vel", "ac", "f-n"), (("300", "0.1", "A"), ("300", "0.1", "B")),
                    (("300", "0.1", "C"), ("300", "0.1", "D")),
                    "factory noise type A/B -> C/D"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"f-n": {k: k for k in "ABCD"}}
    snr_db = (10.0, 9.0, 10.0, 9.0, 8.0, 7.0)
    speed_jitter = 0.002  # servo-controlled
    whine_hz = (700.0, 640.0, 760.0, 680.0, 720.0, 600.0)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        vel = float(cond.attrs.get("vel", "300")) * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ac = float(cond.attrs.get("ac", "0.05"))
        dur = n / sr
        stroke_len = 0.12
        t_acc = 0.006 / ac
        t_const = max(0.0, stroke_len / (vel / 1000.0) - t_acc)
        dwell = 0.25 * (1.0 + self._jit(rng, cond, 0.02))
        strokes, stops, rail_times = [], [], []
        t = -rng.random() * 2.0 * (t_const + 2 * t_acc + dwell)
        while t < dur + 1.0:
            # trapezoid: ramp up over t_acc, constant t_const, ramp down over t_acc
            strokes.append((t + t_acc, t + 2 * t_acc + t_const))
            rail_times.append(t + t_acc + 0.4 * t_const)
            t += 2 * t_acc + t_const
            stops.append(t)
            t += dwell * (1.0 + rng.normal(0.0, 0.01 * cond.spread))
        v = gate(n, sr, strokes, ramp_s=t_acc)
        if anomaly == "stall":
            dips = [(s, s + rng.uniform(0.05, 0.12)) for s in rail_times if rng.random() < 0.7]
            v *= 1.0 - (0.55 * min(sev, 1.6)) * gate(n, sr, dips, ramp_s=0.03)
        f_max = self.whine_hz[cond.unit] * vel / 300.0
        ph = rotation_from_freq(n, sr, f_max * v, rng.random())
        amps = self._amps(rng, cond, np.array([1.0 / k for k in range(1, 9)]))
        whine_tab = harmonic_table([(k, a, rng.random() * 6.28) for k, a in enumerate(amps, 1)
                                    if _nyquist_ok(k, f_max, sr)])
        env = 0.1 + v
        if anomaly == "stall":
            env *= 1.0 + 0.4 * sev * sine(rotation(rng, n, sr, 11.0))
        x = read_table(whine_tab, ph) * env
        x /= _rms(x)
        roll = shaped_noise(rng, n, noise_shape(n, sr, (1.0, 1400.0, 1.2, 0.0)))
        x += 0.6 * roll * v
        hard = min(2.0, (ac / 0.05) ** 0.5)
        knock = damped_kernel(sr, 900.0, 0.006, 120.0)
        add_events(x, np.round(np.asarray(stops) * sr), knock,
                   0.8 * hard * (1.0 + rng.normal(0.0, 0.05, len(stops))))
        if anomaly == "rail":
            click = damped_kernel(sr, 2600.0, 0.002, 0.0)
            add_events(x, np.round(np.asarray(rail_times) * sr), click,
                       [1.2 * sev] * len(rail_times))
        elif anomaly == "lubrication":
            squeal = shaped_noise(rng, n, noise_shape(n, sr, (1.0, 4200.0, 0.3, 0.0)))
            x += (0.5 * sev) * squeal * (v * v)
        return x, []


# ---------------------------------------------------------------------------------------------
# ToyCar / ToyTrain
# ---------------------------------------------------------------------------------------------


def _car_profile(model: str, k: int) -> np.ndarray:
    """Deterministic harmonic amplitude profile of a toy model (depends only on its name)."""
    g = np.random.default_rng(zlib.crc32(model.encode()))
    return g.uniform(0.3, 1.0, k) / np.arange(1, k + 1) ** 0.7


class ToyCar(MachineModel):
    """Toy car on a track: motor whine whose pitch follows the supply voltage, gear/rolling noise.

    Motor ``f_m = 10.5 Hz * V`` with a slow ripple (uneven track) and drift; harmonics with a
    car-model-specific profile; commutator (brush) noise band around 4 kHz and rolling noise
    around 350 Hz. Anomalies: ``gear`` (whine modulation at the wheel rate ``f_m / 22``),
    ``tire`` (a knock per wheel turn), ``motor`` (odd harmonics and brush noise up).
    """

    name = "ToyCar"
    anomaly_kinds = ("gear", "tire", "motor")
    sections = (
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("A1", "28V", "1", "1"), ("A1", "31V", "1", "1")),
                    (("A1", "40V", "1", "1"), ("A1", "43V", "1", "1")),
                    "speed (supply voltage) 28-31 V -> 40-43 V"),
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("B1", "34V", "1", "1"), ("B2", "34V", "1", "1")),
                    (("B1", "34V", "2", "1"), ("B2", "34V", "2", "1")),
                    "microphone 1 -> 2 (farther, duller, wall reflection)"),
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("C1", "31V", "1", "1"), ("C1", "34V", "1", "1")),
                    (("C1", "31V", "1", "2"), ("C1", "34V", "1", "3")),
                    "added factory noise 1 (pink) -> 2/3 (brown + 2.5 kHz band / white-ish + "
                    "1.2 kHz band, more clanks)"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"noise": {"1": "A", "2": "C", "3": "D"}}
    gear_ratio = 22.0
    motor_per_volt = 10.5

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        volts = float(cond.attrs.get("spd", "31V").rstrip("V"))
        f_m = self.motor_per_volt * volts * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ph = rotation(rng, n, sr, f_m, drift=0.004 * cond.spread,
                      wobble=(0.012 * cond.spread, 0.9))
        kmax = max(1, int(0.94 * sr / 2 / (f_m * 1.05)))
        amps = self._amps(rng, cond, _car_profile(cond.attrs.get("car", "A1"), min(kmax, 12)))
        if anomaly == "motor":
            amps[2::2] *= 1.0 + 1.4 * sev
        tonal = read_table(harmonic_table(
            [(k, a, rng.random() * 6.28) for k, a in enumerate(amps, 1)]), ph)
        tonal /= _rms(tonal)
        wheel = scale_phase(ph, 1.0 / self.gear_ratio)
        if anomaly == "gear":
            tonal *= 1.0 + 0.5 * sev * sine(wheel)
        # Brush noise (pulsing at 2 f_m, too fast for log-mel frames) and rolling noise are
        # stationary noise bands.
        brush_gain = 0.3 * (1.0 + (0.9 * sev if anomaly == "motor" else 0.0))
        noises = [(noise_shape(n, sr, (1.0, 4000.0, 1.5, 0.0)), brush_gain),
                  (noise_shape(n, sr, (1.0, 350.0, 1.2, 0.0)), 0.45)]
        x = tonal
        if anomaly == "tire":
            tab = burst_table(sr, _r3(f_m / self.gear_ratio), (650.0, 1900.0), 0.006)
            x += (0.9 * sev) * read_table(tab, wheel)
        return x, noises


class ToyTrain(MachineModel):
    """Toy train: motor whine following the speed step, rail-joint clacks, rolling rumble.

    Motor ``f_m = 38 Hz * spd``; rail joints every ``1 / (0.32 spd)`` s, each giving two clacks
    (front and rear bogie); rolling rumble ~250 Hz. Anomalies: ``wheel`` (a flat wheel: a knock
    per wheel turn ``f_m / 14``), ``gear`` (whine modulation at the wheel rate plus extra lines),
    ``scrape`` (intermittent scraping noise ~3 kHz).
    """

    name = "ToyTrain"
    anomaly_kinds = ("wheel", "gear", "scrape")
    sections = (
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("A1", "6", "1", "1"), ("A1", "7", "1", "1")),
                    (("A1", "10", "1", "1"), ("A1", "11", "1", "1")),
                    "speed step 6-7 -> 10-11"),
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("B1", "8", "1", "1"), ("B2", "8", "1", "1")),
                    (("B1", "8", "3", "1"), ("B2", "8", "3", "1")),
                    "microphone 1 -> 3 (farther, brighter, low cut, reflection)"),
        SectionSpec(("car", "spd", "mic", "noise"),
                    (("C1", "7", "1", "1"), ("C1", "8", "1", "1")),
                    (("C1", "7", "1", "2"), ("C1", "8", "1", "3")),
                    "added factory noise 1 -> 2/3"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"noise": {"1": "B", "2": "C", "3": "D"}}
    wheel_ratio = 14.0

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        spd = float(cond.attrs.get("spd", "8"))
        f_m = 38.0 * spd * (1.0 + self._jit(rng, cond, self.speed_jitter))
        ph = rotation(rng, n, sr, f_m, drift=0.004 * cond.spread,
                      wobble=(0.008 * cond.spread, 0.4))
        kmax = max(1, int(0.94 * sr / 2 / (f_m * 1.05)))
        amps = self._amps(rng, cond, _car_profile("T" + cond.attrs.get("car", "A1"),
                                                  min(kmax, 10)))
        harm = [(k, a, rng.random() * 6.28) for k, a in enumerate(amps, 1)]
        wheel = scale_phase(ph, 1.0 / self.wheel_ratio)
        if anomaly == "gear":
            harm += [(k, 0.06 * sev, rng.random() * 6.28) for k in (11, 13) if k <= kmax]
        tonal = read_table(harmonic_table(harm), ph)
        tonal /= _rms(tonal)
        if anomaly == "gear":
            tonal *= 1.0 + 0.3 * sev * sine(wheel)
        roll = noise_shape(n, sr, (1.0, 250.0, 1.0, 0.0), (0.3, 900.0, 1.0, 0.0))
        x = 0.7 * tonal
        f_j = 0.32 * spd
        gap = 0.11 * 6.0 / spd * f_j
        clack = burst_table(sr, _r3(f_j), (1100.0, 2300.0), 0.012, offsets=(0.0, round(gap, 4)),
                            weights=(1.0, 0.8))
        x += 1.5 * read_table(clack, scale_phase(ph, f_j / f_m) + int(rng.random() * ONE_CYCLE))
        if anomaly == "wheel":
            tab = burst_table(sr, _r3(f_m / self.wheel_ratio), (700.0, 1500.0), 0.005)
            x += (0.8 * sev) * read_table(tab, wheel)
        elif anomaly == "scrape":
            scr = shaped_noise(rng, n, noise_shape(n, sr, (1.0, 3000.0, 0.7, 0.0)))
            starts = np.sort(rng.uniform(0.0, n / sr, 6))
            g = gate(n, sr, [(s, s + rng.uniform(0.2, 0.6)) for s in starts], ramp_s=0.05)
            x += (0.3 * sev) * scr * g
        return x, [(roll, 0.5)]


#: Model instance per machine type.
MODELS: dict[str, MachineModel] = {
    m.name: m for m in (ToyCar(), ToyTrain(), Bearing(), Fan(), Gearbox(), Slider(), Valve())
}


def model(machine: str) -> MachineModel:
    """The :class:`MachineModel` of a machine type (exact DCASE spelling)."""
    try:
        return MODELS[machine]
    except KeyError:
        known = ", ".join(MACHINES)
        raise ValueError(f"unknown machine type {machine!r}; known: {known}") from None
