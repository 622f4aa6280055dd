"""Long recordings written to disk for the tests: a demo episode (several demo speakers' turns
over a tone bed, with known speech spans) and music with noise and no speech at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from deepemocluster.config.schema import DemoConfig
from deepemocluster.data.demo_episodes import EpisodeSpec, music, render_episode
from deepemocluster.data.demo_plan import plan_corpus
from deepemocluster.data.demo_voice import SAMPLE_RATE, coloured_noise


def write_episode(path: Path, seconds: float, index: int = 0) -> list[tuple[int, float, float]]:
    """Write a demo episode of about ``seconds``; returns its (turn, start_s, end_s) speech spans."""
    plan = plan_corpus(DemoConfig(n_train=2, n_dev=0, n_test=0, n_unlabelled=6, n_speakers=4))
    speakers = tuple(sorted({u.speaker for u in plan if u.split is None}, key=lambda s: s.spk_id))
    spec = EpisodeSpec(index, path.name, speakers, seconds, 1000 * (index + 1), (1.5, 4.5))
    samples, spans = render_episode(spec, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return [(s.turn, s.start_s, s.end_s) for s in spans]


def write_music_and_noise(path: Path, seconds: float) -> Path:
    """A recording without speech: the episodes' tone bed over coloured noise."""
    rng = np.random.default_rng(5)
    n = round(seconds * SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * music(n, rng) + 0.02 * coloured_noise(n, rng), SAMPLE_RATE)
    return path
