"""Demo corpus plan: labels, speakers and every utterance's settings, decided from one seed before
any audio is rendered (see docs/demo_corpus.md for the numbers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepemocluster.config.schema import DemoConfig
from deepemocluster.errors import ConfigError

# The corpus parts in generation order: MSP-Podcast split names, then the unlabelled part (None).
PARTS: tuple[str | None, ...] = ("Train", "Development", "Test1", None)


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
            code, avd = draw_label(rng)
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


def draw_label(rng: np.random.Generator) -> tuple[str, tuple[float, float, float]]:
    priors = np.array([e.prior for e in EMOTIONS])
    emotion = EMOTIONS[int(rng.choice(len(EMOTIONS), p=priors / priors.sum()))]
    jitter = _LABEL_CHOLESKY @ rng.normal(size=3)
    avd = np.clip(np.array(emotion.centroid) + jitter, 1.0, 7.0).round(4)
    return emotion.code, (float(avd[0]), float(avd[1]), float(avd[2]))
