"""Sound models of the machines that run in event cycles: valve and slider.

The valve clicks open and shut in a repeating pattern (:data:`VALVE_PATTERNS`) with flow hiss
while open; the slider runs reciprocating strokes with a trapezoidal speed profile, a whine that
follows the speed and a knock at each stop. Both are built from events and gates
(:mod:`dgmix.synth.events`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dgmix.synth.events import add_events, damped_kernel, gate
from dgmix.synth.machine_model import LEVEL_DB, MachineModel, SectionSpec, _nyquist_ok
from dgmix.synth.spectral import band_noise
from dgmix.synth.wavetables import periodic, random_phases, rms, rotation, rotation_from_freq, sine

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

    def _events(self, rng, dur, pattern, anomaly, sev):
        """Open, close and extra (chatter) times (s) of one valve over ``dur`` seconds."""
        period, windows = VALVE_PATTERNS[pattern]
        opens, closes, extra = [], [], []
        t0 = -rng.random() * period
        while t0 < dur:
            for a, b in windows:
                to = t0 + a * period + rng.normal(0.0, 0.004)
                tc = t0 + b * period + rng.normal(0.0, 0.004)
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
        fc, tau = self.click_hz[cond.unit], 0.004
        if anomaly == "seat":
            fc *= 1.0 - 0.25 * min(sev, 2.0)
            tau *= 1.0 + 1.2 * sev
        x = np.zeros(n, dtype=np.float32)
        # Supply pressure differs a little from clip to clip: click strength and flow.
        press = 1.0 + rng.normal(0.0, 0.12)
        hiss = band_noise(rng, n, sr, 3500.0, 1.0)
        valves = [("pat", 1.0, 1.0)] if "pat" in cond.attrs else [("v1pat", 1.0, 1.0), ("v2pat", 0.6, 0.7)]
        open_gate, whistle_gate = np.zeros((2, n), dtype=np.float32)
        for key, gain, fmul in valves:
            opens, closes, extra = self._events(rng, n / sr, cond.attrs[key], anomaly, sev)
            k_open = damped_kernel(sr, round(fc * fmul, 1), round(tau, 5), 180.0)
            k_close = damped_kernel(sr, round(1.35 * fc * fmul, 1), round(0.75 * tau, 5), 140.0)
            amp = gain * press * (1.0 + rng.normal(0.0, 0.06, len(opens)))
            add_events(x, sr, opens, k_open, amp)
            add_events(x, sr, closes, k_close, 1.2 * amp)
            add_events(x, sr, extra, k_open, [0.7 * gain] * len(extra))
            g = gate(n, sr, list(zip(opens, closes)))
            open_gate += gain * g
            if key != "v2pat":
                whistle_gate += g
        hiss_gain = 0.08 * press**2 * (1.0 + (1.5 * sev if anomaly == "contamination" else 0.0))
        x += hiss_gain * hiss * open_gate
        if anomaly == "contamination":
            x += (0.06 * sev) * sine(rotation(rng, n, sr, 5200.0 + 200.0 * cond.unit, drift=0.004)) * whistle_gate
        x += periodic(random_phases(rng, [(k, 0.02 / k) for k in range(1, 7)]), rotation(rng, n, sr, 29.5, drift=0.002))
        return x, []


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
        SectionSpec(("vel", "ac"), (("300", "0.05"), ("350", "0.05")), (("600", "0.05"), ("700", "0.05")),
                    "velocity 300-350 mm/s -> 600-700 mm/s"),
        SectionSpec(("vel", "ac"), (("400", "0.03"), ("400", "0.05")), (("400", "0.2"), ("400", "0.3")),
                    "acceleration 0.03-0.05 -> 0.2-0.3 (short ramps, harder stops)"),
        SectionSpec(("vel", "ac", "f-n"), (("300", "0.1", "A"), ("300", "0.1", "B")),
                    (("300", "0.1", "C"), ("300", "0.1", "D")), "factory noise type A/B -> C/D"),
    )
    noise_keys: ClassVar[dict[str, dict[str, str]]] = {"f-n": {k: k for k in "ABCD"}}
    snr_db = (10.0, 9.0, 10.0, 9.0, 8.0, 7.0)
    speed_jitter = 0.002  # servo-controlled
    whine_hz = (700.0, 640.0, 760.0, 680.0, 720.0, 600.0)

    def machine_sound(self, rng, n, sr, cond, anomaly, sev):
        vel = float(cond.attrs.get("vel", "300")) * (1.0 + rng.normal(0.0, self.speed_jitter))
        ac = float(cond.attrs.get("ac", "0.05"))
        t_acc = 0.006 / ac
        t_const = max(0.0, 0.12 / (vel / 1000.0) - t_acc)  # 0.12 m strokes
        dwell = 0.25 * (1.0 + rng.normal(0.0, 0.02))
        strokes, stops, rail_times = [], [], []
        t = -rng.random() * 2.0 * (t_const + 2 * t_acc + dwell)
        while t < n / sr + 1.0:
            # trapezoid: ramp up over t_acc, constant t_const, ramp down over t_acc
            strokes.append((t + t_acc, t + 2 * t_acc + t_const))
            rail_times.append(t + t_acc + 0.4 * t_const)
            t += 2 * t_acc + t_const
            stops.append(t)
            t += dwell * (1.0 + rng.normal(0.0, 0.01))
        v = gate(n, sr, strokes, ramp_s=t_acc)
        if anomaly == "stall":
            dips = [(s, s + rng.uniform(0.05, 0.12)) for s in rail_times if rng.random() < 0.7]
            v *= 1.0 - (0.55 * min(sev, 1.6)) * gate(n, sr, dips, ramp_s=0.03)
        f_max = self.whine_hz[cond.unit] * vel / 300.0
        ph = rotation_from_freq(sr, f_max * v, rng.random())
        amps = self._amps(rng, np.array([1.0 / k for k in range(1, 9)]))
        lines = [(k, a) for k, a in enumerate(amps, 1) if _nyquist_ok(k, f_max, sr)]
        whine = periodic(random_phases(rng, lines), ph)
        env = 0.1 + v
        if anomaly == "stall":
            env *= 1.0 + 0.4 * sev * sine(rotation(rng, n, sr, 11.0))
        x = whine * env
        x /= rms(x)
        x += 0.6 * band_noise(rng, n, sr, 1400.0, 1.2) * v  # rolling noise
        knock = damped_kernel(sr, 900.0, 0.006, 120.0)  # at each stop, harder with a higher acceleration
        add_events(x, sr, stops, knock, 0.8 * min(2.0, (ac / 0.05) ** 0.5) * (1.0 + rng.normal(0.0, 0.05, len(stops))))
        if anomaly == "rail":
            add_events(x, sr, rail_times, damped_kernel(sr, 2600.0, 0.002, 0.0), [1.2 * sev] * len(rail_times))
        elif anomaly == "lubrication":
            x += (0.5 * sev) * band_noise(rng, n, sr, 4200.0, 0.3) * (v * v)  # friction squeal
        return x, []
