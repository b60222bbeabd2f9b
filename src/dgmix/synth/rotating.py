"""Sound models of the rotating machines: fan, gearbox and bearing.

Each is a shaft rotation (a phase accumulator with drift) read through harmonic wavetables (blade
pass, gear mesh with sidebands, shaft harmonics) plus shaped noise; the anomalies add lines,
modulation or defect impulse trains locked to the rotation.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dgmix.synth.machine_model import MICS, MachineModel, SectionSpec, _nyquist_ok, _r3
from dgmix.synth.recording import Mic
from dgmix.synth.spectral import band_noise, noise_shape, shaped_noise
from dgmix.synth.wavetables import burst_table, periodic, random_phases, read_table, rotation, scale_phase, sine, tone


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
                    "background noise type: pink floor / 600 Hz machinery band with 50 Hz hum (W, X) -> brown noise "
                    "with a 2.5 kHz band or a white-ish floor with a 1.2 kHz band, 60 Hz hum, frequent clanks (Y, Z)"),
        SectionSpec(("n-lv",), (("L1",), ("L2",)), (("L3",), ("L4",)),
                    "background noise level: SNR 0/-2 dB (L1, L2) -> -8/-11 dB (L3, L4) relative to the section's SNR"),
        SectionSpec(("rpm",), (("1380",), ("1440",)), (("1740",), ("1800",)),
                    "rotation speed 1380-1440 rpm -> 1740-1800 rpm"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"m-n": {"W": "A", "X": "B", "Y": "C", "Z": "D"}}
    snr_keys: ClassVar[dict[str, dict[str, float]]] = {"n-lv": {"L1": 0.0, "L2": -2.0, "L3": -8.0, "L4": -11.0}}
    blades = (5, 6, 7, 5, 7, 6)
    rpm_default = (1440.0, 1200.0, 1680.0, 1320.0, 1560.0, 1080.0)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        rpm = float(cond.attrs.get("rpm", self.rpm_default[cond.unit]))
        f_r = rpm / 60.0 * (1.0 + rng.normal(0.0, self.speed_jitter))
        ph = rotation(rng, n, sr, f_r, drift=0.002)
        b = self.blades[cond.unit]
        blade_m = [m for m in range(1, 40) if _nyquist_ok(m * b * 1.01, f_r, sr)]
        blade = self._amps(rng, np.array([1.0 / m**0.9 for m in blade_m]))
        # weak shaft lines, then the blade-pass lines
        harm = random_phases(rng, [(1, 0.05), (2, 0.03), (3, 0.02)] + [(m * b, a) for m, a in zip(blade_m, blade)])
        aero_shape = noise_shape(n, sr, (1.0, 700.0 * f_r / 24.0, 1.8, 0.5))
        if anomaly == "imbalance":
            harm.append((1, 0.45 * sev, 0.0))
        elif anomaly == "blade":
            harm += [(m * b + d, 0.14 * sev * rng.uniform(0.6, 1.0), rng.random() * 6) for m in (1, 2) for d in (-1, 1)]
        tonal = tone(harm, ph)
        rev = sine(ph)
        if anomaly == "imbalance":
            tonal *= 1.0 + 0.3 * sev * rev
        if anomaly == "blade":
            # Blade damage makes the air flow pulse once per revolution.
            aero = shaped_noise(rng, n, aero_shape)
            aero *= 1.0 + 0.5 * sev * rev
            x, noises = tonal + 0.8 * aero, []
        else:
            # (The blade-pass pulsation of the flow, > 100 Hz, is far faster than what log-mel
            # frames resolve; the aerodynamic noise is treated as stationary.)
            x, noises = tonal, [(aero_shape, 0.8)]
        if anomaly == "rub":
            x += (0.9 * sev) * band_noise(rng, n, sr, 5000.0, 0.4) * np.maximum(rev, 0.0) ** 4
        return x, noises


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
        volt, wt = float(cond.attrs.get("volt", "1.5")), float(cond.attrs.get("wt", "30"))
        load = wt / 200.0
        f_s = 12.0 * volt * (1.0 - 0.0006 * wt) * (1.0 + rng.normal(0.0, self.speed_jitter))
        ph = rotation(rng, n, sr, f_s, drift=0.003)
        z = self.teeth[cond.unit]
        mesh = self._amps(rng, np.array([(0.6 + 0.8 * load) / m for m in range(1, 6)]))
        sb1, sb2 = 0.12 * (1.0 + load), 0.05 * (1.0 + load)
        if anomaly == "wear":
            mesh[1:3] *= 1.0 + 1.1 * sev
            sb1, sb2 = sb1 * (1.0 + 2.0 * sev), sb2 * (1.0 + 3.0 * sev)
        harm = random_phases(rng, [(1, 0.05), (2, 0.04)], span=6)
        for m, a in enumerate(mesh, start=1):
            if _nyquist_ok(m * z + 3, f_s * 1.05, sr):  # mesh line and sidebands +-1, +-2
                harm += random_phases(rng, [(m * z, a), (m * z - 1, a * sb1), (m * z + 1, a * sb1),
                                            (m * z - 2, a * sb2), (m * z + 2, a * sb2)])
        if anomaly == "wear":
            harm += random_phases(rng, [(m * z + d, 0.08 * sev) for m in (1, 2) for d in (3, -3)], span=6)
        tonal = tone(harm, ph)
        if anomaly == "misalign":
            tonal *= 1.0 + 0.45 * sev * sine(scale_phase(ph, 2))
        if anomaly == "tooth":
            res = 2200.0 + 150.0 * cond.unit
            tonal += (0.9 * sev) * read_table(burst_table(sr, _r3(f_s), (res, 1.45 * res), 0.003), ph)
        rumble = noise_shape(n, sr, (1.0, 300.0, 2.0, 0.0), (0.3, 3000.0, 1.0, 0.0))
        return tonal, [(rumble, 0.35 + 0.3 * load)]


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
        SectionSpec(("vel", "loc", "f-n"), (("10", "A", "A"), ("12", "A", "A")), (("10", "A", "C"), ("12", "A", "C")),
                    "factory noise type A (pink) -> C (brown + 2.5 kHz band, clanks)"),
    )
    mic_keys: ClassVar[dict[str, dict[str, Mic]]] = {
        "loc": {
            "A": MICS["1"],
            "B": Mic(gain_db=-1.0, reflect_ms=0.35, reflect_gain=0.25),
            "E": Mic(gain_db=-6.0, tilt_db_oct=-2.5, reflect_ms=1.7, reflect_gain=0.55, lowpass_hz=4000.0),
            "F": Mic(gain_db=-5.0, tilt_db_oct=1.5, reflect_ms=0.9, reflect_gain=0.5, highpass_hz=250.0),
        }
    }
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"f-n": {k: k for k in "ABCD"}}
    resonance = (2800.0, 3400.0, 4100.0, 3000.0, 3700.0, 2500.0)
    #: Defect impulse rate (times the shaft rate) and amplitude of each anomaly kind.
    defects: ClassVar[dict[str, tuple[float, float]]] = {"outer": (3.57, 1.2), "inner": (5.43, 3.5), "ball": (4.6, 0.4)}

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        vel = float(cond.attrs.get("vel", "10"))
        f_s = 2.0 * vel * (1.0 + rng.normal(0.0, self.speed_jitter))
        ph = rotation(rng, n, sr, f_s, drift=0.002)
        f_res = self.resonance[cond.unit]
        shaft = self._amps(rng, np.array([0.3, 0.15, 0.1, 0.06, 0.04, 0.03]))
        x = 0.4 * periodic(random_phases(rng, enumerate(shaft, 1)), ph)
        speed_gain = (vel / 10.0) ** 0.5
        terms = [(speed_gain, f_res, 0.6, 0.0), (0.8, 150.0, 1.5, 1.0)]
        if anomaly == "ball":
            terms.append((0.15 * sev * speed_gain, 1.3 * f_res, 1.2, 0.0))
        if anomaly is not None:
            ratio, amp = self.defects[anomaly]
            tab = burst_table(sr, _r3(ratio * f_s), (f_res, 1.6 * f_res), 0.0008)
            imp = read_table(tab, scale_phase(ph, ratio, rng.random()))
            if anomaly == "inner":
                imp *= (0.5 + 0.5 * sine(ph)) ** 2
            x += amp * sev * speed_gain * imp
        return x, [(noise_shape(n, sr, *terms), 1.0)]
