"""Long unlabelled "episodes" for the demo corpus, and where the speech in them is.

An episode is a podcast in miniature: two or three speakers of the unlabelled part take turns of
several utterances (4–16 s of speech, the utterances 0.1–0.25 s apart), separated by pauses of
1–3 s that carry a music-like tone bed, all over a low noise floor. Each utterance's speech span
(its syllables, without the lead-in and lead-out) is recorded, so tests can check segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepemocluster.config.schema import DemoConfig
from deepemocluster.data.demo_plan import PlannedUtterance, Speaker, draw_label
from deepemocluster.data.demo_voice import SAMPLE_RATE, coloured_noise, render_speech
from deepemocluster.errors import ConfigError

EPISODE_DIR = "episodes"  # under Unlabelled/
TURNS_NAME = "episode_turns.csv"  # under Labels/
TURNS_HEADER = ("episode", "turn", "start_s", "end_s", "speaker", "emo_class", "arousal",
                "valence", "dominance")  # fmt: skip
TURN_SPEECH_S = (4.0, 16.0)  # speech per turn; > segment.max_s (11 s) now and then, to be split
UTTERANCE_GAP_S = (0.1, 0.25)  # within a turn: shorter than segment.pause_s (0.5 s)
TURN_GAP_S = (1.0, 3.0)  # between turns: the tone bed plays
_MARGIN = 0.05  # seconds of each utterance kept before and after its speech
_FADE = 160  # samples (10 ms) of fade at each end of a piece
_SPEECH_RMS = 0.1  # every utterance is brought to this level, ± 3 dB
_BED_LEVEL = 0.35  # tone bed RMS relative to speech
_FLOOR_LEVEL = 0.01  # noise floor RMS relative to speech (-40 dB)
_UTTERANCES_PER_EPISODE = 100_000  # utterance index block per episode: seeds never collide


@dataclass(frozen=True)
class EpisodeSpec:
    index: int
    name: str  # file name incl. .wav
    speakers: tuple[Speaker, ...]
    seconds: float
    first_utterance: int  # index of its first utterance (seeds each utterance's random stream)
    utterance_seconds: tuple[float, float]


@dataclass(frozen=True)
class SpeechSpan:
    """One utterance inside an episode: a row of the turns CSV."""

    turn: int
    start_s: float
    end_s: float
    utterance: PlannedUtterance


def plan_episodes(cfg: DemoConfig, plan: Sequence[PlannedUtterance]) -> list[EpisodeSpec]:
    """``cfg.n_episodes`` episodes voiced by the unlabelled part's speakers."""
    if cfg.n_episodes == 0:
        return []
    speakers = sorted({u.speaker for u in plan if u.split is None}, key=lambda s: s.spk_id)
    if not speakers:
        raise ConfigError("config key 'data.demo.n_episodes': episodes need n_unlabelled > 0")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    episodes = []
    for k in range(cfg.n_episodes):
        cast = rng.choice(
            len(speakers), size=min(len(speakers), int(rng.integers(2, 4))), replace=False
        )
        episodes.append(
            EpisodeSpec(
                index=k,
                name=f"EPISODE_{k + 1:02d}.wav",
                speakers=tuple(speakers[i] for i in cast),
                seconds=float(cfg.episode_seconds * rng.uniform(2 / 3, 4 / 3)),
                first_utterance=len(plan) + k * _UTTERANCES_PER_EPISODE,
                utterance_seconds=(cfg.min_seconds, cfg.max_seconds),
            )
        )
    return episodes


def render_episode(spec: EpisodeSpec, seed: int) -> tuple[np.ndarray, list[SpeechSpan]]:
    """float64 samples in [-0.9, 0.9] of about ``spec.seconds``, and its speech spans in time
    order. Turns are added while they fit; the rest is tone bed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3, spec.index]))
    n = round(spec.seconds * SAMPLE_RATE)
    speech = np.zeros(n)
    spans: list[SpeechSpan] = []
    next_utterance = spec.first_utterance
    t = _samples(rng.uniform(*TURN_GAP_S))  # the episode opens with the bed alone
    turn = 0
    while True:
        speaker = spec.speakers[turn % len(spec.speakers)]
        pieces, next_utterance = _turn(spec, speaker, seed, rng, next_utterance)
        length = sum(len(p) for p, _, _ in pieces)
        if t + length + _samples(TURN_GAP_S[0]) > n:
            break
        for piece, (a, b), utt in pieces:
            speech[t : t + len(piece)] = piece
            spans.append(SpeechSpan(turn, (t + a) / SAMPLE_RATE, (t + b) / SAMPLE_RATE, utt))
            t += len(piece)
        t += _samples(rng.uniform(*TURN_GAP_S))
        turn += 1
    mix = speech + _tone_bed(n, spans, rng) + coloured_noise(n, rng) * _SPEECH_RMS * _FLOOR_LEVEL
    return mix * (0.9 / (np.max(np.abs(mix)) + 1e-12)), spans


def _turn(
    spec: EpisodeSpec, speaker: Speaker, seed: int, rng: np.random.Generator, index: int
) -> tuple[list[tuple[np.ndarray, tuple[int, int], PlannedUtterance]], int]:
    """One speaker's utterances, each trimmed to its speech ± a margin, levelled, faded and
    followed by a short gap: (piece, speech span inside the piece, utterance), next index."""
    target, total, pieces = rng.uniform(*TURN_SPEECH_S), 0.0, []
    while total < target:
        code, avd = draw_label(rng)
        utt = PlannedUtterance(index, f"{spec.name}#{index}", None, speaker, code, avd,
                               float(rng.uniform(*spec.utterance_seconds)))  # fmt: skip
        index += 1
        samples, (a, b) = render_speech(utt, seed)
        lo, hi = max(0, a - _samples(_MARGIN)), min(len(samples), b + _samples(_MARGIN))
        piece = samples[lo:hi] * _fades(hi - lo)
        piece *= (
            _SPEECH_RMS * 10 ** (rng.uniform(-3, 3) / 20) / (np.sqrt(np.mean(piece**2)) + 1e-12)
        )
        gap = np.zeros(_samples(rng.uniform(*UTTERANCE_GAP_S)))
        pieces.append((np.concatenate([piece, gap]), (a - lo, b - lo), utt))
        total += (b - a) / SAMPLE_RATE
    return pieces, index


def _tone_bed(n: int, spans: list[SpeechSpan], rng: np.random.Generator) -> np.ndarray:
    """Music in every stretch between turns, 0.1 s clear of the speech on each side."""
    bed = np.zeros(n)
    edges = _turn_edges(spans, n)
    for start, end in zip(edges[:-1:2], edges[1::2], strict=True):
        start, end = start + _samples(0.1), end - _samples(0.1)
        if end - start >= _samples(0.5):
            bed[start:end] = music(end - start, rng) * _SPEECH_RMS * _BED_LEVEL
    return bed


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS "music": a major chord of harmonic tones on a random root, pulsing at ~2 Hz,
    faded in and out over 0.2 s."""
    t = np.arange(n) / SAMPLE_RATE
    root = rng.uniform(110.0, 220.0)
    chord = sum(
        0.5**h * np.sin(2 * np.pi * root * ratio * (h + 1) * t + rng.uniform(0, 2 * np.pi))
        for ratio in (1.0, 1.25, 1.5, 2.0)
        for h in range(3)
    )
    pulse = 0.75 + 0.25 * np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * t)
    tone = chord * pulse * np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.2)
    return tone / (np.sqrt(np.mean(tone**2)) + 1e-12)


def _turn_edges(spans: list[SpeechSpan], n: int) -> list[int]:
    """[0, first turn's start, first turn's end, next start, ..., n]: the stretches between
    turns as consecutive pairs."""
    edges = [0]
    for turn in sorted({s.turn for s in spans}):
        mine = [s for s in spans if s.turn == turn]
        edges += [_samples(mine[0].start_s), _samples(mine[-1].end_s)]
    return edges + [n]


def turn_rows(episode: str, spans: Sequence[SpeechSpan]) -> list[list[object]]:
    """Rows of the turns CSV (``TURNS_HEADER``) for one episode."""
    return [
        [episode, s.turn, f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.utterance.speaker.spk_id,
         s.utterance.emo_class, *(f"{x:.4f}" for x in s.utterance.avd)]
        for s in spans
    ]  # fmt: skip


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def _fades(n: int) -> np.ndarray:
    return np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / _FADE)
