"""Sound models of the toy vehicles: ToyCar and ToyTrain.

A motor whine whose pitch follows the speed setting (harmonic profile fixed per car model by
:meth:`_Toy.motor`), rolling noise and, for the train, rail-joint clacks; the anomalies add
per-wheel-turn knocks, gear modulation, motor or scraping noise.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import numpy as np

from dgmix.synth.events import gate
from dgmix.synth.machine_model import MachineModel, SectionSpec, _r3
from dgmix.synth.spectral import band_noise, noise_shape
from dgmix.synth.wavetables import burst_table, random_phases, read_table, rotation, scale_phase, sine, tone


class _Toy(MachineModel):
    """Shared motor of the toy vehicles: a whine with a per-model harmonic profile (:meth:`motor`)."""

    max_harmonics = 12
    wobble = (0.0, 0.0)  # speed ripple of the track: relative depth, rate (Hz)

    def motor(self, rng, n, sr, f_m, profile):
        """Motor phase, its harmonic ``(k, amplitude)`` pairs (profile with jitter) and the highest allowed ``k``.

        The harmonic amplitude profile is fixed per toy model and depends only on its name.
        """
        ph = rotation(rng, n, sr, f_m, drift=0.004, wobble=self.wobble)
        kmax = max(1, int(0.94 * sr / 2 / (f_m * 1.05)))
        k = min(kmax, self.max_harmonics)
        prof = np.random.default_rng(zlib.crc32(profile.encode())).uniform(0.3, 1.0, k) / np.arange(1, k + 1) ** 0.7
        return ph, self._amps(rng, prof), kmax


class ToyCar(_Toy):
    """Toy car on a track: motor whine whose pitch follows the supply voltage, gear/rolling noise.

    Motor ``f_m = 10.5 Hz * V`` with a slow ripple (uneven track) and drift; harmonics with a
    car-model-specific profile; commutator (brush) noise band around 4 kHz and rolling noise
    around 350 Hz. Anomalies: ``gear`` (whine modulation at the wheel rate ``f_m / 22``),
    ``tire`` (a knock per wheel turn), ``motor`` (odd harmonics and brush noise up).
    """

    name = "ToyCar"
    anomaly_kinds = ("gear", "tire", "motor")
    sections = (
        SectionSpec(("car", "spd", "mic", "noise"), (("A1", "28V", "1", "1"), ("A1", "31V", "1", "1")),
                    (("A1", "40V", "1", "1"), ("A1", "43V", "1", "1")), "speed (supply voltage) 28-31 V -> 40-43 V"),
        SectionSpec(("car", "spd", "mic", "noise"), (("B1", "34V", "1", "1"), ("B2", "34V", "1", "1")),
                    (("B1", "34V", "2", "1"), ("B2", "34V", "2", "1")),
                    "microphone 1 -> 2 (farther, duller, wall reflection)"),
        SectionSpec(("car", "spd", "mic", "noise"), (("C1", "31V", "1", "1"), ("C1", "34V", "1", "1")),
                    (("C1", "31V", "1", "2"), ("C1", "34V", "1", "3")),
                    "added factory noise 1 (pink) -> 2/3 (brown + 2.5 kHz band / white-ish + 1.2 kHz band, "
                    "more clanks)"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"noise": {"1": "A", "2": "C", "3": "D"}}
    gear_ratio = 22.0
    motor_per_volt = 10.5
    wobble = (0.012, 0.9)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        volts = float(cond.attrs.get("spd", "31V").rstrip("V"))
        f_m = self.motor_per_volt * volts * (1.0 + rng.normal(0.0, self.speed_jitter))
        ph, amps, _ = self.motor(rng, n, sr, f_m, cond.attrs.get("car", "A1"))
        if anomaly == "motor":
            amps[2::2] *= 1.0 + 1.4 * sev
        x = tone(random_phases(rng, enumerate(amps, 1)), ph)
        wheel = scale_phase(ph, 1.0 / self.gear_ratio)
        if anomaly == "gear":
            x *= 1.0 + 0.5 * sev * sine(wheel)
        # Brush noise (pulsing at 2 f_m, too fast for log-mel frames) and rolling noise are
        # stationary noise bands.
        brush_gain = 0.3 * (1.0 + (0.9 * sev if anomaly == "motor" else 0.0))
        noises = [(noise_shape(n, sr, (1.0, 4000.0, 1.5, 0.0)), brush_gain),
                  (noise_shape(n, sr, (1.0, 350.0, 1.2, 0.0)), 0.45)]
        if anomaly == "tire":
            knock = burst_table(sr, _r3(f_m / self.gear_ratio), (650.0, 1900.0), 0.006)
            x += (0.9 * sev) * read_table(knock, wheel)
        return x, noises


class ToyTrain(_Toy):
    """Toy train: motor whine following the speed step, rail-joint clacks, rolling rumble.

    Motor ``f_m = 38 Hz * spd``; rail joints every ``1 / (0.32 spd)`` s, each giving two clacks
    (front and rear bogie); rolling rumble ~250 Hz. Anomalies: ``wheel`` (a flat wheel: a knock
    per wheel turn ``f_m / 14``), ``gear`` (whine modulation at the wheel rate plus extra lines),
    ``scrape`` (intermittent scraping noise ~3 kHz).
    """

    name = "ToyTrain"
    anomaly_kinds = ("wheel", "gear", "scrape")
    sections = (
        SectionSpec(("car", "spd", "mic", "noise"), (("A1", "6", "1", "1"), ("A1", "7", "1", "1")),
                    (("A1", "10", "1", "1"), ("A1", "11", "1", "1")), "speed step 6-7 -> 10-11"),
        SectionSpec(("car", "spd", "mic", "noise"), (("B1", "8", "1", "1"), ("B2", "8", "1", "1")),
                    (("B1", "8", "3", "1"), ("B2", "8", "3", "1")),
                    "microphone 1 -> 3 (farther, brighter, low cut, reflection)"),
        SectionSpec(("car", "spd", "mic", "noise"), (("C1", "7", "1", "1"), ("C1", "8", "1", "1")),
                    (("C1", "7", "1", "2"), ("C1", "8", "1", "3")), "added factory noise 1 -> 2/3"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"noise": {"1": "B", "2": "C", "3": "D"}}
    wheel_ratio = 14.0
    max_harmonics = 10
    wobble = (0.008, 0.4)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        spd = float(cond.attrs.get("spd", "8"))
        f_m = 38.0 * spd * (1.0 + rng.normal(0.0, self.speed_jitter))
        ph, amps, kmax = self.motor(rng, n, sr, f_m, "T" + cond.attrs.get("car", "A1"))
        harm = random_phases(rng, enumerate(amps, 1))
        wheel = scale_phase(ph, 1.0 / self.wheel_ratio)
        if anomaly == "gear":
            harm += random_phases(rng, [(k, 0.06 * sev) for k in (11, 13) if k <= kmax])
        tonal = tone(harm, ph)
        if anomaly == "gear":
            tonal *= 1.0 + 0.3 * sev * sine(wheel)
        roll = noise_shape(n, sr, (1.0, 250.0, 1.0, 0.0), (0.3, 900.0, 1.0, 0.0))
        x = 0.7 * tonal
        # Rail joints at f_j: two clacks each (front and rear bogie).
        f_j = 0.32 * spd
        gap = 0.11 * 6.0 / spd * f_j
        clack = burst_table(sr, _r3(f_j), (1100.0, 2300.0), 0.012, ((0.0, 1.0), (round(gap, 4), 0.8)))
        x += 1.5 * read_table(clack, scale_phase(ph, f_j / f_m, rng.random()))
        if anomaly == "wheel":
            knock = burst_table(sr, _r3(f_m / self.wheel_ratio), (700.0, 1500.0), 0.005)
            x += (0.8 * sev) * read_table(knock, wheel)
        elif anomaly == "scrape":
            scr = band_noise(rng, n, sr, 3000.0, 0.7)
            starts = np.sort(rng.uniform(0.0, n / sr, 6))
            g = gate(n, sr, [(s, s + rng.uniform(0.2, 0.6)) for s in starts], ramp_s=0.05)
            x += (0.3 * sev) * scr * g
        return x, [(roll, 0.5)]
