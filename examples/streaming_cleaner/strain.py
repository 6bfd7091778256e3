"""Synthetic multichannel strain: coloured noise, a power line, and the occasional chirp.

A ``StrainSource`` stands for one detector's data stream: ``channels`` series sampled at
``sample_rate`` Hz, handed out one update (``update_size`` samples, one second by default) at
a time, as a live client would send them. Each update is a smooth continuation of the one
before (the noise filter, the line's phase and any chirp carry over), and everything comes
from the seed, so a stream is the same on every run. A chirp (a tone sweeping up in
frequency under a smooth envelope, reaching each channel a few milliseconds apart, like one
signal seen by two detectors) starts in an update with probability ``chirp_probability``.

``record_archive`` writes ``streams`` such sources into one array, the "recorded archive" the
offline mode replays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Chirp", "StrainSource", "record_archive"]

LINE_HZ = 60.0
LINE_AMPLITUDE = 0.5
NOISE_POLE = 0.6  # AR(1) pole: noise that is louder at low frequencies, as detector noise is
CHANNEL_DELAY_S = 0.005


@dataclass(frozen=True)
class Chirp:
    """A sweep from ``f0`` to ``f1`` Hz over ``duration_s``, starting at ``start_s``."""

    start_s: float
    duration_s: float
    f0: float
    f1: float
    amplitude: float

    def at(self, t: np.ndarray) -> np.ndarray:
        """The chirp's value at times ``t`` (seconds from the stream's start); 0 outside it."""
        tau = t - self.start_s
        inside = (tau >= 0) & (tau < self.duration_s)
        tau = np.where(inside, tau, 0.0)
        sweep = (self.f1 - self.f0) / (2 * self.duration_s)
        phase = 2 * np.pi * (self.f0 * tau + sweep * tau**2)
        envelope = np.sin(np.pi * tau / self.duration_s) ** 2
        return np.where(inside, self.amplitude * envelope * np.sin(phase), 0.0)


class StrainSource:
    """One stream's updates, ``[channels, update_size]`` float32 each, in order."""

    def __init__(
        self,
        seed: int,
        *,
        channels: int = 2,
        update_size: int = 256,
        sample_rate: float = 256.0,
        chirp_probability: float = 0.1,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.channels = channels
        self.update_size = update_size
        self.sample_rate = sample_rate
        self.chirp_probability = chirp_probability
        self.position = 0  # samples handed out so far, per channel
        self.chirps: list[Chirp] = []
        self._noise_tail = np.zeros(channels)
        self._line_phase = self.rng.uniform(0, 2 * np.pi, (channels, 1))

    def next_update(self) -> np.ndarray:
        """The next ``update_size`` samples of every channel."""
        t = (self.position + np.arange(self.update_size)) / self.sample_rate
        if self.rng.random() < self.chirp_probability:
            self.chirps.append(self._chirp(t[0]))
        values = self._noise() + LINE_AMPLITUDE * np.sin(2 * np.pi * LINE_HZ * t + self._line_phase)
        for chirp in self.chirps:
            for channel in range(self.channels):
                values[channel] += chirp.at(t - channel * CHANNEL_DELAY_S)
        end_s = t[-1]
        self.chirps = [c for c in self.chirps if c.start_s + c.duration_s > end_s]
        self.position += self.update_size
        return values.astype(np.float32)

    def _chirp(self, update_start_s: float) -> Chirp:
        seconds = self.update_size / self.sample_rate
        return Chirp(
            start_s=update_start_s + self.rng.uniform(0, seconds),
            duration_s=self.rng.uniform(0.5, 2.0),
            f0=self.rng.uniform(20, 40),
            f1=self.rng.uniform(60, 110),
            amplitude=self.rng.uniform(1.0, 4.0),
        )

    def _noise(self) -> np.ndarray:
        """White noise through a one-pole low-pass filter, continued from the last update."""
        white = self.rng.standard_normal((self.channels, self.update_size))
        out = np.empty_like(white)
        tail = self._noise_tail
        for i in range(self.update_size):
            tail = NOISE_POLE * tail + white[:, i]
            out[:, i] = tail
        self._noise_tail = tail
        return out * np.sqrt(1 - NOISE_POLE**2)


def record_archive(
    streams: int, updates: int, seed: int = 0, *, channels: int = 2, update_size: int = 256
) -> np.ndarray:
    """``[streams, updates, channels, update_size]`` float32: stream ``i`` from seed + i."""
    sources = [
        StrainSource(seed + i, channels=channels, update_size=update_size) for i in range(streams)
    ]
    return np.stack([np.stack([s.next_update() for _ in range(updates)]) for s in sources])
