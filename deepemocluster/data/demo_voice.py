"""The demo voice: a source–filter synthesiser whose prosody and voice quality follow arousal,
valence and dominance (glottal pulses + breath noise through formant resonators, then room reverb
and background noise). numpy/scipy only; docs/demo_corpus.md has the tables behind the numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from deepemocluster.data.demo_plan import PlannedUtterance, Speaker

SAMPLE_RATE = 16000


# --------------------------------------------------------------------------------------------
# Emotion → acoustics. Attributes are first mapped to [-1, 1] (4 = 0), then to voice settings.


@dataclass(frozen=True)
class Prosody:
    f0_hz: float  # mean pitch of this utterance
    accent_st: float  # mean height of syllable pitch accents (semitones): the pitch range
    accent_spread: float  # relative variability of accent heights
    slope_st: float  # pitch declination (<0) or rise (>0) across the utterance, semitones
    tremor_st: float  # depth of the slow f0 modulation
    tremor_hz: float
    jitter: float  # cycle-scale f0 perturbation, fraction of f0
    breathiness: float  # aspiration noise relative to the pulses
    open_quotient: float  # glottal open phase / period: lower = sharper pulses, more HF energy
    tilt_pole: float  # one-pole low-pass on the source: higher = steeper spectral tilt
    syllable_rate: float  # syllables per second
    loudness_db: float  # voice level relative to the speaker's neutral level
    f1_shift: float  # formant multipliers (open mouth raises F1, a smile raises F2)
    f2_shift: float


def prosody_for(avd: tuple[float, float, float], spk: Speaker, rng: np.random.Generator) -> Prosody:
    """Continuous mapping, plus per-utterance variation so labels are cues, not a lookup table."""
    a, v, d = ((x - 4.0) / 3.0 for x in avd)
    jiggle = rng.normal(size=8)
    return Prosody(
        f0_hz=spk.f0_hz * 2 ** ((5.5 * a - 3.0 * d + 0.6 * jiggle[0]) / 12),
        accent_st=max(0.3, 2.2 + 0.8 * a + 2.2 * d + 0.4 * jiggle[1]),
        accent_spread=max(0.05, 0.3 + 0.22 * v + 0.05 * jiggle[2]),
        slope_st=-1.5 + 2.5 * v + 0.8 * jiggle[3],
        tremor_st=max(0.0, 0.1 + 0.5 * (1 - d) + 0.05 * jiggle[4]),
        tremor_hz=float(rng.uniform(4.0, 7.0)),
        jitter=max(0.001, 0.008 - 0.006 * v + 0.001 * jiggle[5]),
        breathiness=spk.breathiness * 2 ** (-1.0 * v - 0.4 * a - 0.5 * d),
        open_quotient=float(np.clip(0.62 - 0.15 * a - 0.06 * d + 0.03 * jiggle[6], 0.35, 0.85)),
        tilt_pole=float(np.clip(0.55 - 0.35 * a + spk.tilt, 0.0, 0.95)),
        syllable_rate=spk.syllable_rate * 2 ** (0.6 * a + 0.1 * jiggle[7]),
        loudness_db=6.0 * a + 4.0 * d,
        f1_shift=1.0 + 0.05 * a,
        f2_shift=1.0 + 0.1 * v,
    )


# --------------------------------------------------------------------------------------------
# Rendering: syllable plan → f0 contour → glottal source → vocal tract → room and noise.

# F1–F4 (Hz) of seven vowels for an adult male tract; speakers scale them by formant_scale.
VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],  # a
        [270, 2290, 3010, 3700],  # i
        [300, 870, 2240, 3300],  # u
        [530, 1840, 2480, 3500],  # e
        [570, 840, 2410, 3300],  # o
        [660, 1720, 2410, 3400],  # ae
        [490, 1350, 1690, 3300],  # er
    ],
    dtype=float,
)
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])
AMPLITUDE_TREMOR = 0.3  # amplitude modulation depth per semitone of f0 tremor
_TAIL = 480  # samples of vocal-tract ringing kept past each syllable (30 ms)


@dataclass(frozen=True)
class Syllables:
    start: np.ndarray  # first sample of each syllable
    length: np.ndarray  # samples
    vowel: np.ndarray  # row of VOWELS


def render_utterance(utt: PlannedUtterance, seed: int) -> np.ndarray:
    """float64 samples in [-0.9, 0.9]; the utterance's own random stream makes it reproducible
    and independent of every other utterance."""
    return render_speech(utt, seed)[0]


def render_speech(utt: PlannedUtterance, seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``render_utterance``'s samples and where its speech is: (first sample of the first
    syllable, end of the last), leaving out the lead-in and lead-out."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, utt.index]))
    n = round(utt.seconds * SAMPLE_RATE)
    prosody = prosody_for(utt.avd, utt.speaker, rng)
    syllables = plan_syllables(n, prosody.syllable_rate, rng)
    tremor = np.sin(
        2 * np.pi * prosody.tremor_hz * np.arange(n) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    )
    f0 = f0_contour(n, syllables, prosody, tremor, rng)
    source = glottal_source(f0, prosody, tremor, rng)
    voice = vocal_tract(source, syllables, utt.speaker.formant_scale, prosody, rng)
    voice[:n] += frication(n, syllables, rng) * _active_rms(voice)
    speech = (int(syllables.start[0]), int(syllables.start[-1] + syllables.length[-1]))
    return room_and_noise(voice, n, prosody.loudness_db, rng), speech


def plan_syllables(n: int, rate: float, rng: np.random.Generator) -> Syllables:
    """Syllables of ~1/rate s with occasional short pauses, between 0.1–0.3 s of lead-in/out."""
    lead, trail = (rng.uniform(0.1, 0.3, size=2) * SAMPLE_RATE).astype(int)
    end = max(n - trail, lead + 1)
    starts, lengths = [], []
    t = int(lead)
    while True:
        length = int(SAMPLE_RATE / rate * rng.uniform(0.7, 1.3))
        if t + length > end:
            break
        starts.append(t)
        lengths.append(length)
        t += length
        if rng.random() < 0.12:
            t += int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
    if not starts:  # a very short utterance: one syllable filling what there is
        starts, lengths = [int(lead)], [end - int(lead)]
    count = len(starts)
    return Syllables(np.array(starts), np.array(lengths), rng.integers(len(VOWELS), size=count))


def f0_contour(
    n: int, syl: Syllables, p: Prosody, tremor: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Instantaneous f0 (Hz) per sample: declination/rise + syllable accents + tremor + jitter."""
    pos = np.linspace(-0.5, 0.5, n)
    semitones = p.slope_st * pos
    heights = p.accent_st * np.maximum(0.0, 0.6 + p.accent_spread * rng.normal(size=len(syl.start)))
    for start, length, height in zip(syl.start, syl.length, heights, strict=True):
        semitones[start : start + length] += height * np.hanning(length)
    semitones += p.tremor_st * tremor
    semitones += _smoothed_noise(n, 0.9, rng) * p.jitter * 12 / np.log(2)  # fraction → semitones
    return np.clip(p.f0_hz * 2 ** (semitones / 12), 50.0, 550.0)


def glottal_source(
    f0: np.ndarray, p: Prosody, tremor: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rosenberg glottal flow pulses, differentiated (lip radiation), plus pulse-synchronous
    aspiration noise, amplitude tremor, then tilted by a one-pole low-pass: the excitation of the
    vocal tract."""
    phase = np.cumsum(f0) / SAMPLE_RATE
    # Position inside the period, in float32: np.cos is ~10x faster there, and precise enough.
    frac = (phase - np.floor(phase)).astype(np.float32)
    t_open = 0.6 * p.open_quotient
    t_close = 0.4 * p.open_quotient
    is_opening = frac < t_open
    # One cosine for both phases: rising 0.5·(1 − cos(π·x)) while opening, falling cos(π/2·y) after.
    angle = np.where(
        is_opening, np.pi * frac / t_open, 0.5 * np.pi * np.minimum((frac - t_open) / t_close, 1.0)
    )
    cosine = np.cos(angle).astype(np.float64)
    flow = np.where(is_opening, 0.5 * (1.0 - cosine), cosine)
    pulses = np.diff(flow, prepend=0.0)
    pulses /= np.sqrt(np.mean(pulses**2)) + 1e-12
    breath = rng.normal(size=f0.size) * (0.3 + flow) * p.breathiness * 4.0
    tilt = p.tilt_pole
    shaky = 1.0 + AMPLITUDE_TREMOR * p.tremor_st * tremor
    return signal.lfilter([1.0 - tilt], [1.0, -tilt], (pulses + breath) * shaky)


def vocal_tract(
    source: np.ndarray, syl: Syllables, formant_scale: float, p: Prosody, rng: np.random.Generator
) -> np.ndarray:
    """Each syllable's source, shaped by a smooth envelope, through its vowel's cascade of formant
    resonators; overlap-added with its ringing tail. Length: len(source) + _TAIL."""
    out = np.zeros(source.size + _TAIL)
    shift = np.array([p.f1_shift, p.f2_shift, 1.0, 1.0]) * formant_scale
    stress_db = rng.normal(0.0, 2.0, size=len(syl.start))
    for start, length, vowel, gain_db in zip(
        syl.start, syl.length, syl.vowel, stress_db, strict=True
    ):
        env = np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 0.6 * 10 ** (gain_db / 20)
        segment = np.concatenate([source[start : start + length] * env, np.zeros(_TAIL)])
        formants = VOWELS[vowel] * shift * rng.uniform(0.95, 1.05, size=4)
        out[start : start + length + _TAIL] += signal.sosfilt(formant_sos(formants), segment)
    return out


def formant_sos(formants: np.ndarray) -> np.ndarray:
    """Cascade of 2-pole resonators, each with unit gain at DC (Klatt-style cascade synthesis),
    so formant amplitudes follow from their frequencies as in a real tract."""
    freqs = np.minimum(formants, 0.45 * SAMPLE_RATE)
    r = np.exp(-np.pi * BANDWIDTHS / SAMPLE_RATE)
    c = -2 * r * np.cos(2 * np.pi * freqs / SAMPLE_RATE)
    sos = np.zeros((len(freqs), 6))
    sos[:, 0] = 1 + c + r**2
    sos[:, 3] = 1.0
    sos[:, 4] = c
    sos[:, 5] = r**2
    return sos


_FRICATION_SOS = signal.butter(2, 2500, btype="highpass", fs=SAMPLE_RATE, output="sos")


def frication(n: int, syl: Syllables, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise bursts at some syllable onsets: consonants, so the audio is not all vowel."""
    env = np.zeros(n)
    for start, length in zip(syl.start, syl.length, strict=True):
        if rng.random() < 0.55:
            burst = int(length * rng.uniform(0.15, 0.3))
            lo = max(0, start - burst // 2)
            env[lo : lo + burst] = np.hanning(burst)[: n - lo] * rng.uniform(0.15, 0.45)
    return signal.sosfilt(_FRICATION_SOS, rng.normal(size=n)) * env


def room_and_noise(
    voice: np.ndarray, n: int, loudness_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Label-independent nuisances: random room reverb, coloured background noise at a random SNR
    (relative to the speaker's neutral level, so a louder voice stands further above it), gain."""
    reference = _active_rms(voice)
    wet = signal.fftconvolve(voice * 10 ** (loudness_db / 20), _room_response(rng))[:n]
    snr_db = rng.uniform(20.0, 35.0)
    mix = wet + coloured_noise(n, rng) * reference / 10 ** (snr_db / 20)
    return mix * (0.9 / (np.max(np.abs(mix)) + 1e-12)) * rng.uniform(0.35, 1.0)


def _room_response(rng: np.random.Generator) -> np.ndarray:
    """Direct sound + exponentially decaying noise tail (RT60 0.1–0.6 s, random wet level)."""
    rt60 = rng.uniform(0.1, 0.6)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.normal(size=t.size) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # first reflection after ~3 ms
    tail *= rng.uniform(0.05, 0.4) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    tail[0] = 1.0
    return tail


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise from white (pole 0) to rumble-heavy (pole 0.98)."""
    pole = rng.uniform(0.0, 0.98)
    noise = signal.lfilter([1.0], [1.0, -pole], rng.normal(size=n))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _smoothed_noise(n: int, pole: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS low-passed noise (for jitter: f0 wobble that varies over a few periods)."""
    noise = signal.lfilter([1.0 - pole], [1.0, -pole], rng.normal(size=n))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _active_rms(x: np.ndarray) -> float:
    """RMS over the samples above 1 % of the peak: the level of the speech, not of the pauses."""
    active = x[np.abs(x) > 0.01 * np.max(np.abs(x))]
    return float(np.sqrt(np.mean(active**2))) if active.size else 1.0
