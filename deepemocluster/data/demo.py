"""Built-in demo corpus: deterministic synthetic emotional speech in MSP-Podcast layout.

No dataset can be downloaded where this project is built and tested, so it ships its own. Each
utterance is a source–filter "voice" (glottal pulses + breath noise through formant resonators)
whose pitch, pitch range and contour, speaking rate, loudness, spectral tilt, jitter, breathiness and
tremor follow continuous arousal/valence/dominance labels, spoken by varied speakers, then put
through label-independent reverb, background noise and gain. numpy/scipy only; see
docs/demo_corpus.md for the tables behind every number here.

Layout written under ``root``::

    Audios/<id>.wav                  labelled Train / Development / Test1 utterances
    Unlabelled/<id>.wav              unlabelled utterances (not in the CSV)
    Labels/labels_consensus.csv      FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    demo.json                        stamp: the DemoConfig + format version, written last
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from deepemocluster.config import DemoConfig
from deepemocluster.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Bump whenever the generator's output changes, so stamped corpora on disk are regenerated.
FORMAT_VERSION = 2
STAMP_NAME = "demo.json"
CSV_HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
# The corpus parts in generation order: MSP-Podcast split names, then the unlabelled part (None).
PARTS: tuple[str | None, ...] = ("Train", "Development", "Test1", None)
_OWN_ENTRIES = {"Audios", "Labels", "Unlabelled", STAMP_NAME}
_MIN_PARALLEL = (
    200  # below this many utterances, starting worker processes costs more than it saves
)


# --------------------------------------------------------------------------------------------
# Label model: a categorical class, then A/V/D jittered around that class's centroid.


@dataclass(frozen=True)
class EmotionClass:
    code: str  # MSP-Podcast EmoClass letter
    prior: float  # share of utterances (neutral-heavy, as in real corpora)
    centroid: tuple[float, float, float]  # (arousal, valence, dominance) on the 1–7 scale


EMOTIONS = (
    EmotionClass("N", 0.36, (3.9, 4.1, 4.0)),  # neutral
    EmotionClass("H", 0.16, (5.0, 5.6, 4.6)),  # happy
    EmotionClass("A", 0.10, (5.8, 2.4, 5.6)),  # angry
    EmotionClass("S", 0.11, (2.7, 2.6, 3.1)),  # sad
    EmotionClass("C", 0.08, (3.8, 2.9, 5.0)),  # contempt
    EmotionClass("U", 0.07, (5.4, 4.7, 3.9)),  # surprise
    EmotionClass("D", 0.07, (4.4, 2.5, 4.7)),  # disgust
    EmotionClass("F", 0.05, (5.1, 2.6, 2.8)),  # fear
)
# Gaussian jitter of A/V/D around the class centroid (1–7 scale). Arousal and dominance jitter are
# correlated, as the two are in real corpora (perceived activation and control go together).
LABEL_SD = 0.6
LABEL_CORR = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
_LABEL_CHOLESKY = np.linalg.cholesky(LABEL_SD**2 * LABEL_CORR)


# --------------------------------------------------------------------------------------------
# Speakers and the corpus plan (everything decided before any audio is rendered).


@dataclass(frozen=True)
class Speaker:
    spk_id: int
    gender: str
    f0_hz: float  # habitual pitch
    formant_scale: float  # vocal tract length: shorter tract → higher formants
    syllable_rate: float  # habitual syllables per second
    breathiness: float  # habitual aspiration noise level
    tilt: float  # habitual voice-source tilt offset


@dataclass(frozen=True)
class PlannedUtterance:
    index: int  # global, seeds this utterance's own random stream
    name: str  # file name incl. .wav
    split: str | None  # None: unlabelled
    speaker: Speaker
    emo_class: str
    avd: tuple[float, float, float]  # arousal, valence, dominance on 1–7
    seconds: float


def plan_corpus(cfg: DemoConfig) -> list[PlannedUtterance]:
    """Speakers, labels and durations of every utterance, from the one seed."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    counts = [cfg.n_train, cfg.n_dev, cfg.n_test, cfg.n_unlabelled]
    per_part = speakers_per_part(counts, cfg.n_speakers)
    spk_ids = rng.permutation(cfg.n_speakers) + 1
    plan: list[PlannedUtterance] = []
    first = 0
    for part, count, n_spk in zip(PARTS, counts, per_part, strict=True):
        ids, first = spk_ids[first : first + n_spk], first + n_spk
        speakers = [_draw_speaker(rng, int(s), i) for i, s in enumerate(ids)]
        if count == 0:
            continue
        who = rng.permutation(np.arange(count) % n_spk)
        for k in range(count):
            code, avd = _draw_label(rng)
            spk = speakers[who[k]]
            index = len(plan)
            plan.append(
                PlannedUtterance(
                    index=index,
                    name=f"DEMO_{spk.spk_id:04d}_{index:05d}.wav",
                    split=part,
                    speaker=spk,
                    emo_class=code,
                    avd=avd,
                    seconds=float(rng.uniform(cfg.min_seconds, cfg.max_seconds)),
                )
            )
    return plan


def speakers_per_part(counts: list[int], n_speakers: int) -> list[int]:
    """Split the speaker pool in proportion to utterance counts, ≥ 1 per non-empty part, so
    no speaker is shared between Train, Development, Test1 and the unlabelled part."""
    active = [i for i, c in enumerate(counts) if c > 0]
    if n_speakers < len(active):
        raise ConfigError(
            f"config key 'data.demo.n_speakers': need at least {len(active)} speakers "
            f"(one per non-empty part), got {n_speakers}"
        )
    share = np.array(counts, dtype=float) / max(1, sum(counts)) * n_speakers
    alloc = np.where(np.array(counts) > 0, np.maximum(1, np.floor(share)), 0).astype(int)
    while alloc.sum() < n_speakers:  # largest remainder gets the next speaker
        alloc[int(np.argmax(np.where(alloc > 0, share - alloc, -np.inf)))] += 1
    while alloc.sum() > n_speakers:  # only possible through the ≥ 1 floor: take from the richest
        alloc[int(np.argmax(np.where(alloc > 1, alloc - share, -np.inf)))] -= 1
    return alloc.tolist()


def _draw_speaker(rng: np.random.Generator, spk_id: int, order: int) -> Speaker:
    """Genders alternate inside a part so every part with ≥ 2 speakers has both."""
    female = order % 2 == 0
    f0_lo, f0_hi = (165.0, 255.0) if female else (85.0, 150.0)
    vtl_lo, vtl_hi = (1.08, 1.20) if female else (0.92, 1.04)
    return Speaker(
        spk_id=spk_id,
        gender="Female" if female else "Male",
        f0_hz=float(np.exp(rng.uniform(np.log(f0_lo), np.log(f0_hi)))),
        formant_scale=float(rng.uniform(vtl_lo, vtl_hi)),
        syllable_rate=float(rng.uniform(3.4, 4.6)),
        breathiness=float(rng.uniform(0.03, 0.12) * (1.3 if female else 1.0)),
        tilt=float(rng.uniform(-0.08, 0.08)),
    )


def _draw_label(rng: np.random.Generator) -> tuple[str, tuple[float, float, float]]:
    priors = np.array([e.prior for e in EMOTIONS])
    emotion = EMOTIONS[int(rng.choice(len(EMOTIONS), p=priors / priors.sum()))]
    jitter = _LABEL_CHOLESKY @ rng.normal(size=3)
    avd = np.clip(np.array(emotion.centroid) + jitter, 1.0, 7.0).round(4)
    return emotion.code, (float(avd[0]), float(avd[1]), float(avd[2]))


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
    return room_and_noise(voice, n, prosody.loudness_db, rng)


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
    mix = wet + _coloured_noise(n, rng) * reference / 10 ** (snr_db / 20)
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


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Files: write into a temp dir, stamp last, rename into place.


def generate_demo_corpus(root: Path, cfg: DemoConfig, workers: int | None = None) -> Path:
    """Make the demo corpus at ``root`` unless a complete one for ``cfg`` is already there.

    ``cfg`` may be a DemoConfig or any mapping with its fields (e.g. the ``data.demo`` node).
    A corpus is complete only when its stamp (written last) matches; anything else at ``root`` that
    looks like a demo corpus is replaced atomically. A folder with other content is never deleted.
    ``workers`` processes render the audio (default: up to 2); the files do not depend on it.
    """
    root = Path(root)
    cfg = _as_demo_config(cfg)
    stamp = _stamp(cfg)
    if read_stamp(root) == stamp:
        return root
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling_dir(root, "partial")
    try:
        began = time.perf_counter()
        count = _write_corpus(tmp, cfg, workers or min(2, os.cpu_count() or 1))
        (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        if read_stamp(root) == stamp:  # another process finished the same corpus meanwhile
            shutil.rmtree(tmp)
            return root
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("demo corpus: %d files in %s (%.1f s)", count, root, time.perf_counter() - began)
    return root


def read_stamp(root: Path) -> dict | None:
    """The stamp of a complete corpus at ``root``, or None."""
    try:
        return json.loads((Path(root) / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _stamp(cfg: DemoConfig) -> dict:
    return {"format_version": FORMAT_VERSION, "config": asdict(cfg)}


def _as_demo_config(cfg: DemoConfig | Mapping) -> DemoConfig:
    if not isinstance(cfg, DemoConfig):
        cfg = DemoConfig(**{f.name: cfg[f.name] for f in fields(DemoConfig)})
    values = {f.name: getattr(cfg, f.name) for f in fields(DemoConfig)}
    counts = ("n_train", "n_dev", "n_test", "n_unlabelled", "n_speakers")
    bad = [k for k in counts if int(values[k]) != values[k] or values[k] < 0]
    if bad:
        raise ConfigError(f"config key 'data.demo.{bad[0]}': must be a whole number >= 0")
    if cfg.n_train < 1:
        raise ConfigError("config key 'data.demo.n_train': need at least 1 Train utterance")
    if not 0 < cfg.min_seconds <= cfg.max_seconds:
        raise ConfigError("config keys 'data.demo.min_seconds'/'max_seconds': need 0 < min <= max")
    return DemoConfig(
        **{k: int(values[k]) if k in counts or k == "seed" else float(values[k]) for k in values}
    )


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that holds anything but a (possibly stale) demo corpus."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ConfigError(f"data.root {root} exists and is not a folder")
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _OWN_ENTRIES)
    if foreign:
        raise ConfigError(
            f"data.root {root} holds files that are not part of a demo corpus ({', '.join(foreign[:3])}); "
            "refusing to overwrite it: choose an empty or new folder"
        )


def _sibling_dir(root: Path, kind: str) -> Path:
    """A new, uniquely named hidden folder next to ``root`` (same file system, so renames are
    atomic). Unlike tempfile.mkdtemp it honours the umask: the corpus must not end up owner-only."""
    path = root.parent / f".{root.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _swap_into_place(tmp: Path, root: Path) -> None:
    """Rename the finished corpus to ``root``; an old one is renamed aside first, then deleted."""
    if root.exists():
        old = _sibling_dir(root, "old")
        root.rename(old / root.name)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(root)


def _write_corpus(out: Path, cfg: DemoConfig, workers: int) -> int:
    """All wavs and the label CSV under ``out``; returns the number of audio files."""
    for sub in ("Audios", "Unlabelled", "Labels"):
        (out / sub).mkdir()
    plan = plan_corpus(cfg)
    jobs = [(out / ("Audios" if u.split else "Unlabelled") / u.name, u, cfg.seed) for u in plan]
    if workers > 1 and len(jobs) >= _MIN_PARALLEL:
        # spawn, not fork: the caller may already run torch/faiss thread pools (docs/original_work.md).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(_render_to_file, jobs, chunksize=16))
    else:
        for job in jobs:
            _render_to_file(job)
    _write_labels(out / "Labels" / "labels_consensus.csv", [u for u in plan if u.split])
    return len(plan)


def _render_to_file(job: tuple[Path, PlannedUtterance, int]) -> None:
    path, utt, seed = job
    sf.write(path, render_utterance(utt, seed), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _write_labels(path: Path, labelled: list[PlannedUtterance]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for u in labelled:
            a, v, d = u.avd
            writer.writerow(
                [u.name, u.emo_class, f"{a:.4f}", f"{v:.4f}", f"{d:.4f}", u.speaker.spk_id,
                 u.speaker.gender, u.split]
            )  # fmt: skip


# --------------------------------------------------------------------------------------------
# CLI: python -m deepemocluster.data.demo --out DIR [--seed N] [--n-train N] ...


def main(argv: list[str] | None = None) -> int:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.data.demo", description="Write the built-in demo corpus."
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="corpus folder (MSP-Podcast layout)"
    )
    for f in fields(DemoConfig):
        default = getattr(defaults, f.name)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"default {default}",
        )
    args = parser.parse_args(argv)
    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})
    began = time.perf_counter()
    try:
        root = generate_demo_corpus(args.out, cfg)
    except ConfigError as e:
        parser.exit(1, f"error: {e}\n")
    labelled = len(list((root / "Audios").glob("*.wav")))
    unlabelled = len(list((root / "Unlabelled").glob("*.wav")))
    print(
        f"demo corpus (seed {cfg.seed}) at {root}: {labelled} labelled + {unlabelled} unlabelled "
        f"wav files, labels in {root / 'Labels' / 'labels_consensus.csv'} "
        f"({time.perf_counter() - began:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
