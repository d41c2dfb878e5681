"""Tone files and the analysis the end-to-end tests assert on (numpy only)."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 8000

# A 20 ms frame counts as "sound" above this RMS (int16 scale, about -36 dBFS).
# Null-device silence through G.711 decodes to 0 or a few units, so this is far above it.
FRAME_RMS_THRESHOLD = 500.0
# A tone must keep at least this RMS over the analysed window (about -30 dBFS).
TONE_RMS_THRESHOLD = 1000.0
# Share of the window's energy that must lie within +-TONE_BAND_HZ of the expected tone.
TONE_PURITY = 0.5
TONE_BAND_HZ = 25.0
FREQ_TOLERANCE_HZ = 15.0


def write_tone_wav(
    path: Path, freq: float, seconds: float = 10.0, amplitude: float = 0.3, rate: int = RATE
) -> Path:
    """Writes a mono 16-bit sine tone (8 kHz unless `rate` says otherwise); the whole number of
    cycles makes looping seamless."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    samples = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """Reads a 16-bit PCM WAV: (rate, array of shape (channels, samples) as float64)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        channels = w.getnchannels()
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    usable = len(data) - len(data) % channels
    return rate, data[:usable].reshape(-1, channels).T


def rms(x: np.ndarray) -> float:
    """Root mean square of a signal (0.0 when empty)."""
    if len(x) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x))))


def loud_frames(x: np.ndarray, rate: int, frame_ms: int = 20, threshold: float = FRAME_RMS_THRESHOLD) -> int:
    """How many whole frames of `frame_ms` have RMS above `threshold`."""
    size = rate * frame_ms // 1000
    count = len(x) // size
    if count == 0:
        return 0
    frames = x[: count * size].reshape(count, size)
    levels = np.sqrt(np.mean(np.square(frames), axis=1))
    return int(np.sum(levels > threshold))


@dataclass
class ToneReport:
    """What a window of audio contains, for assertions and failure messages."""

    seconds: float
    rms: float
    dominant_hz: float
    purity: float  # share of energy within TONE_BAND_HZ of the expected frequency

    def __str__(self) -> str:
        return (
            f"{self.seconds:.2f} s analysed, rms {self.rms:.0f}, dominant {self.dominant_hz:.1f} Hz, "
            f"{100 * self.purity:.0f}% of energy near the expected tone"
        )


def analyse_tone(x: np.ndarray, rate: int, expected_hz: float) -> ToneReport:
    """FFT (Hann window) of a window of audio: dominant frequency in 100..3500 Hz and purity."""
    if len(x) < rate // 10:
        return ToneReport(len(x) / rate, rms(x), 0.0, 0.0)
    x = x - np.mean(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = (freqs >= 100) & (freqs <= 3500)
    dominant = float(freqs[band][np.argmax(spectrum[band])]) if spectrum[band].sum() > 0 else 0.0
    total = float(spectrum.sum())
    near = float(spectrum[np.abs(freqs - expected_hz) <= TONE_BAND_HZ].sum())
    return ToneReport(len(x) / rate, rms(x), dominant, near / total if total > 0 else 0.0)


def tone_problem(x: np.ndarray, rate: int, expected_hz: float) -> str | None:
    """None when `x` is clearly a tone of `expected_hz`, else a sentence saying what was heard."""
    report = analyse_tone(x, rate, expected_hz)
    if report.rms < TONE_RMS_THRESHOLD:
        return f"expected a {expected_hz:.0f} Hz tone, heard (near) silence: {report}"
    if abs(report.dominant_hz - expected_hz) > FREQ_TOLERANCE_HZ:
        return f"expected a {expected_hz:.0f} Hz tone, heard something else: {report}"
    if report.purity < TONE_PURITY:
        return f"{expected_hz:.0f} Hz is dominant but mixed with too much else: {report}"
    return None


def window(x: np.ndarray, rate: int, start_s: float, length_s: float | None = None) -> np.ndarray:
    """The part of `x` from `start_s`, `length_s` long (or to the end)."""
    a = int(start_s * rate)
    b = len(x) if length_s is None else a + int(length_s * rate)
    return x[a:b]


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear-interpolation resampling (enough to line a prompt up with what a phone heard)."""
    if rate == to:
        return x
    n = int(len(x) * to / rate)
    return np.interp(np.arange(n) * rate / to, np.arange(len(x)), x)


def occurrences(heard: np.ndarray, template: np.ndarray, rate: int, min_score: float = 0.5) -> list[tuple[float, float]]:
    """Where `template` (a prompt) plays inside `heard`: (start s, score) of each match, best
    first within 0.5 s. The score is the normalised cross-correlation (1.0: the same samples),
    computed with FFTs; hold music or silence under it scores near 0."""
    m = len(template)
    if m == 0 or len(heard) < m:
        return []
    t = template - template.mean()
    n = 1 << (len(heard) + m - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(t, n)), n)[: len(heard) - m + 1]
    sq = np.concatenate(([0.0], np.cumsum(heard.astype(np.float64) ** 2)))
    energy = np.sqrt(np.maximum(sq[m:] - sq[:-m], 1e-9)) * np.sqrt(float(np.sum(t**2)))
    score = corr / energy
    found: list[tuple[float, float]] = []
    for i in np.argsort(score)[::-1]:
        s = float(score[i])
        if s < min_score:
            break
        at = i / rate
        if all(abs(at - f) > 0.5 for f, _ in found):
            found.append((at, s))
        if len(found) >= 20:
            break
    return sorted(found)
