"""Prosodic frame descriptors and functionals (data/prosody.py) on synthetic signals of known
pitch, voicing, level and spectrum: F0 of tones and a glide, voicing on noise, the mel frame
grid, functionals of known contours and of all-unvoiced ranges."""

from __future__ import annotations

import itertools
from dataclasses import asdict, replace

import librosa
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from deepemocluster.data import prosody as P
from deepemocluster.data import prosody_functionals as F
from deepemocluster.data.audio import load_audio, mel_features
from deepemocluster.data.chunking import chunk_starts
from deepemocluster.data.features import FeatureSettings

SR = 16000
HOP = 256
FRAME_S = HOP / SR
SETTINGS = P.ProsodySettings()
MEL = FeatureSettings(
    kind="log_mel",
    sample_rate=SR,
    n_mels=64,
    n_fft=512,
    hop_length=HOP,
    fmin=0.0,
    fmax=None,
    log_offset=1e-6,
)
F0_TOLERANCE_ST = 0.1  # steady tones; the largest error seen was 0.02 semitones
GLIDE_TOLERANCE_ST = 0.25
EDGE = 4  # frames at each end that see the zero padding


def col(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, P.LLD_NAMES.index(name)]


def fun(vector: np.ndarray, name: str) -> float:
    return float(vector[F.names().index(name)])


def semitones(hz) -> np.ndarray:
    return 12 * np.log2(np.asarray(hz) / 27.5)


def harmonic(f0_hz, seconds: float = 1.5, n_harmonics: int = 6) -> np.ndarray:
    """A harmonic signal (1/k amplitudes) on the instantaneous F0 ``f0_hz`` (scalar or per
    sample), below Nyquist."""
    n = int(seconds * SR)
    f0 = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1) if k * f0.max() < SR / 2)
    return 0.5 * x / np.abs(x).max()


def glide(
    seconds: float = 2.0, lo: float = 100.0, hi: float = 400.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exponential glide lo → hi (2 octaves), and its F0 per frame centre (semitones)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = lo * (hi / lo) ** (t / seconds)
    centres = np.minimum(np.arange(1 + t.size // HOP) * HOP, t.size - 1)
    return harmonic(f0, seconds), semitones(f0[centres])


def white(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))


# --------------------------------------------------------------------------------------------
# F0 and voicing


@pytest.mark.parametrize("f0_hz", [82.0, 110.0, 220.0, 330.0, 523.0])
def test_f0_of_a_steady_harmonic_tone(f0_hz):
    rows = P.frame_descriptors(harmonic(f0_hz), SETTINGS)
    inner = rows[EDGE:-EDGE]
    assert col(inner, "voiced").min() == 1.0
    error = np.abs(col(inner, "f0_st") - semitones(f0_hz))
    assert error.max() < F0_TOLERANCE_ST, error.max()


def test_f0_follows_a_two_octave_glide():
    audio, truth = glide()
    rows = P.frame_descriptors(audio, SETTINGS)
    voiced = col(rows, "voiced") > 0
    assert voiced[EDGE:-EDGE].all()
    error = np.abs(col(rows, "f0_st") - truth)[EDGE:-EDGE]
    assert error.max() < GLIDE_TOLERANCE_ST, error.max()


def test_f0_is_librosa_yins_on_a_glide():
    """The F0 is ``librosa.yin``'s algorithm with the same search range and frame: on a monotone
    contour (where the 3-frame median and the octave check change nothing) the two agree."""
    audio, _ = glide()
    rows = P.frame_descriptors(audio, SETTINGS)
    reference = librosa.yin(
        audio,
        fmin=SETTINGS.fmin,
        fmax=SETTINGS.fmax,
        sr=SR,
        frame_length=SETTINGS.f0_frame_length,
        hop_length=HOP,
    )
    assert reference.shape == (len(rows),)
    difference = np.abs(col(rows, "f0_st") - semitones(reference))[EDGE:-EDGE]
    assert difference.max() < 0.01, difference.max()


def test_a_short_octave_drop_is_taken_back_and_a_held_step_is_kept():
    """The octave check: 60 ms an octave down inside a 200 Hz stretch is read as an octave error
    (back to 200 Hz); an octave step held for a second on either side is the voice's own."""
    n = int(0.06 * SR)
    f0 = np.full(2 * SR, 200.0)
    f0[SR : SR + n] = 100.0
    rows = P.frame_descriptors(harmonic(f0, seconds=2.0), SETTINGS)
    inside = slice(SR // HOP + 1, (SR + n) // HOP)
    assert col(rows, "voiced")[inside].min() == 1
    np.testing.assert_allclose(col(rows, "f0_st")[inside], semitones(200.0), atol=0.5)

    f0 = np.where(np.arange(2 * SR) < SR, 200.0, 100.0)
    rows = P.frame_descriptors(harmonic(f0, seconds=2.0), SETTINGS)
    after = slice(SR // HOP + 3, SR // HOP + 15)
    np.testing.assert_allclose(col(rows, "f0_st")[after], semitones(100.0), atol=F0_TOLERANCE_ST)


def test_a_tone_is_voiced_and_white_noise_is_not():
    tone = P.frame_descriptors(harmonic(200.0, seconds=2.0), SETTINGS)
    noise = P.frame_descriptors(white(), SETTINGS)
    assert col(tone, "voiced").mean() > 0.95
    assert col(tone, "voicing").mean() > 0.9
    assert col(noise, "voiced").mean() < 0.02
    assert col(noise, "voicing").mean() < 0.3
    assert np.all(col(noise, "f0_st")[col(noise, "voiced") == 0] == 0)


def test_voicing_switches_with_the_signal():
    """Noise, then a tone, then noise: voiced frames are where the tone is (± 3 frames)."""
    noise, tone = white(1.0) * 0.3, harmonic(150.0, seconds=1.0) * 0.5
    rows = P.frame_descriptors(np.concatenate([noise, tone, white(1.0, seed=1) * 0.3]), SETTINGS)
    voiced = np.flatnonzero(col(rows, "voiced"))
    first, last = SR // HOP, 2 * SR // HOP
    assert abs(voiced.min() - first) <= 3 and abs(voiced.max() - last) <= 3
    assert voiced.size >= (last - first) - 6


def test_silence_is_unvoiced_and_finite():
    audio = np.zeros(SR)
    audio[SR // 2 : SR // 2 + 4000] = harmonic(200.0, seconds=0.25)
    rows = P.frame_descriptors(audio, SETTINGS)
    assert np.isfinite(rows).all()
    assert col(rows, "voiced")[:20].sum() == 0 and col(rows, "voiced")[-15:].sum() == 0
    assert col(rows, "voiced")[35:45].min() == 1


# --------------------------------------------------------------------------------------------
# The frame grid


@pytest.mark.parametrize("n_samples", [512, 4000, 16000, 16001, 16255, 16256, 37411])
def test_frame_count_is_the_mel_frame_count(n_samples):
    audio = white(n_samples / SR).astype(np.float32)
    mel = mel_features(audio, **asdict(MEL))
    assert P.frame_descriptors(audio, SETTINGS).shape == (mel.shape[0], len(P.LLD_NAMES))


def test_frame_count_matches_the_feature_store_pass_on_a_file(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, harmonic(180.0, seconds=1.37), SR, subtype="PCM_16")
    mel = MEL.compute(path)
    rows = P.frame_descriptors(
        load_audio(path, SR, MEL.n_fft), P.ProsodySettings.from_features(MEL)
    )
    assert rows.shape[0] == mel.shape[0]
    assert rows.dtype == np.float32


def test_the_spectrum_is_the_mel_pass_stft():
    """Loudness and the spectral columns read librosa's centred STFT power, the one the mels
    are a product of (same window, padding and frames)."""
    audio = white(1.3).astype(np.float32)
    ours = P._power_spectrum(audio, SETTINGS)
    stft = np.abs(librosa.stft(audio, n_fft=MEL.n_fft, hop_length=HOP)) ** 2
    np.testing.assert_allclose(ours, stft.T, rtol=1e-4, atol=1e-5 * stft.max())


def test_frames_line_up_with_the_mel_frames():
    """Noise blocks switched on and off at random frame boundaries: loudness and mel energy
    step together, so their correlation peaks at lag 0."""
    rng = np.random.default_rng(3)
    gains = np.repeat(rng.choice([0.02, 1.0], size=40), rng.integers(3, 9, size=40))
    audio = (np.repeat(gains, HOP) * rng.standard_normal(gains.size * HOP)).astype(np.float32)
    mel_energy = np.log(np.exp(mel_features(audio, **asdict(MEL))).sum(axis=1))
    loud = np.log(col(P.frame_descriptors(audio, SETTINGS), "loudness"))

    def corr(lag: int) -> float:
        a, b = mel_energy[10:-10], np.roll(loud, lag)[10:-10]
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(0) > 0.95
    assert corr(0) > max(corr(-2), corr(-1), corr(1), corr(2))


def test_settings_follow_the_feature_grid_and_key_the_numbers():
    odd = replace(MEL, hop_length=160, n_fft=400)
    settings = P.ProsodySettings.from_features(odd)
    assert (settings.sample_rate, settings.hop_length, settings.n_fft) == (SR, 160, 400)
    assert settings.frame_s == 0.01
    assert settings.key != SETTINGS.key
    assert P.ProsodySettings().key == SETTINGS.key
    audio = white(1.0)
    assert len(P.frame_descriptors(audio, settings)) == 1 + audio.size // 160


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="mono"):
        P.frame_descriptors(np.zeros((2, SR)), SETTINGS)
    with pytest.raises(ValueError, match="two periods"):
        P.frame_descriptors(white(0.5), replace(SETTINGS, fmin=30.0))


# --------------------------------------------------------------------------------------------
# Loudness and spectral balance


def test_loudness_rises_with_amplitude_as_a_power_law():
    """Band powers scale with amplitude², loudness with their 0.3rd power: ×4 amplitude is
    ×16^0.3 = ×2.30 loudness in every frame."""
    noise = white()
    means = [
        col(P.frame_descriptors(a * noise, SETTINGS), "loudness").mean() for a in (0.05, 0.2, 0.8)
    ]
    assert means[0] < means[1] < means[2]
    np.testing.assert_allclose(np.diff(np.log(means)), np.log(16**0.3), rtol=1e-3)


def test_spectral_balance_of_low_passed_against_flat_noise():
    flat = white(3.0)
    low = signal.sosfilt(signal.butter(6, 400, fs=SR, output="sos"), flat)
    v_flat = F.functionals(P.frame_descriptors(flat, SETTINGS), FRAME_S)
    v_low = F.functionals(P.frame_descriptors(low, SETTINGS), FRAME_S)
    # white noise: energy in proportion to bandwidth (4000 Hz over 950 Hz), flat spectrum
    assert fun(v_flat, "alpha_ratio_unvoiced_mean") == pytest.approx(
        10 * np.log10(4000 / 950), abs=0.5
    )
    assert abs(fun(v_flat, "slope_0_500_unvoiced_mean")) < 3.0
    assert abs(fun(v_flat, "slope_500_1500_unvoiced_mean")) < 1.0
    assert abs(fun(v_flat, "hammarberg_unvoiced_mean")) < 3.0
    # low-passed at 400 Hz: the high band is gone, the spectrum falls above the corner
    assert fun(v_low, "alpha_ratio_unvoiced_mean") < fun(v_flat, "alpha_ratio_unvoiced_mean") - 30
    assert fun(v_low, "slope_500_1500_unvoiced_mean") < -20
    assert fun(v_low, "slope_0_500_unvoiced_mean") < fun(v_flat, "slope_0_500_unvoiced_mean") - 5
    assert fun(v_low, "hammarberg_unvoiced_mean") > fun(v_flat, "hammarberg_unvoiced_mean") + 30


# --------------------------------------------------------------------------------------------
# Functionals


def test_names_are_unique_and_match_the_vector():
    vector = F.functionals(P.frame_descriptors(harmonic(200.0), SETTINGS), FRAME_S)
    assert len(set(F.names())) == len(F.names()) == vector.shape[0]
    assert vector.dtype == np.float32


def test_functionals_of_a_rising_glide():
    audio, truth = glide()  # 24 semitones in 2 s
    rows = P.frame_descriptors(audio, SETTINGS)
    v = F.functionals(rows, FRAME_S)
    assert fun(v, "f0_p20") < fun(v, "f0_p50") < fun(v, "f0_p80")
    assert fun(v, "f0_range_20_80") == pytest.approx(0.6 * 24, rel=0.05)
    assert fun(v, "f0_mean") == pytest.approx(truth[EDGE:-EDGE].mean(), abs=0.3)
    assert fun(v, "f0_rise_mean") == pytest.approx(12.0, rel=0.1)  # semitones per second
    assert fun(v, "f0_fall_mean") < 0.1 * fun(v, "f0_rise_mean")
    assert fun(v, "voiced_share") > 0.95
    assert fun(v, "voiced_segments_per_s") == pytest.approx(1 / (len(rows) * FRAME_S), rel=0.01)


def test_a_falling_glide_falls():
    audio, _ = glide(lo=400.0, hi=100.0)
    v = F.functionals(P.frame_descriptors(audio, SETTINGS), FRAME_S)
    assert fun(v, "f0_fall_mean") == pytest.approx(12.0, rel=0.1)
    assert fun(v, "f0_rise_mean") < 0.1 * fun(v, "f0_fall_mean")


def test_an_all_unvoiced_chunk_is_finite_and_says_so():
    """Noise, then a tone: the chunk over the noise has no voiced frame: F0 values are 0, the
    voiced share is 0, nothing is NaN; the chunk over the tone has its pitch."""
    audio = np.concatenate([white(1.5), harmonic(220.0, seconds=1.5)])
    rows = P.frame_descriptors(audio, SETTINGS)
    chunks = F.chunk_functionals(rows, np.array([0, 100]), 62, FRAME_S)
    assert chunks.shape == (2, len(F.names()))
    assert np.isfinite(chunks).all()
    noise, tone = chunks
    assert fun(noise, "voiced_share") == 0.0
    for name in F.names():
        if name.startswith("f0_") or name.endswith("_voiced_mean") or name.endswith("_voiced_std"):
            assert fun(noise, name) == 0.0, name
    assert fun(noise, "voiced_segments_per_s") == 0.0
    assert fun(noise, "unvoiced_segment_mean_s") == pytest.approx(62 * FRAME_S)
    assert fun(noise, "loudness_mean") > 0
    assert fun(tone, "voiced_share") == 1.0
    assert fun(tone, "f0_p50") == pytest.approx(semitones(220.0), abs=F0_TOLERANCE_ST)


def test_silence_gives_finite_functionals():
    rows = P.frame_descriptors(np.zeros(SR), SETTINGS)
    v = F.functionals(rows, FRAME_S)
    assert np.isfinite(v).all()
    assert fun(v, "voiced_share") == 0.0 and fun(v, "loudness_cov") == 0.0


def test_chunks_of_a_short_utterance_cover_what_there_is():
    """Shorter than a chunk: every start is 0 (as chunking pads), each chunk is the whole
    utterance, and a range past the end is all zeros."""
    audio = harmonic(160.0, seconds=0.5)
    result = F.prosody(audio, chunk_starts(32, 3, 62), 62, SETTINGS)
    assert result.frames.shape[0] == 1 + audio.size // HOP
    assert result.chunks.shape == (3, len(F.names()))
    np.testing.assert_array_equal(result.chunks[0], result.chunks[2])
    np.testing.assert_array_equal(result.chunks[0], result.utterance)
    assert not F.functionals(result.frames, FRAME_S, start=500).any()


def test_prosody_chunks_are_the_chunking_grid():
    audio, _ = glide(seconds=3.0)
    rows = P.frame_descriptors(audio, SETTINGS)
    starts = chunk_starts(len(rows), 5, 62)
    result = F.prosody(audio, starts, 62, SETTINGS)
    np.testing.assert_array_equal(result.frames, rows)
    for i, first in enumerate(starts):
        np.testing.assert_array_equal(
            result.chunks[i], F.functionals(rows, FRAME_S, first, first + 62)
        )
    # a rising glide: every later chunk sits higher
    medians = result.chunks[:, F.names().index("f0_p50")]
    assert np.all(np.diff(medians) > 0)
    np.testing.assert_array_equal(result.utterance, F.functionals(rows, FRAME_S))


def reference_functionals(rows: np.ndarray, frame_s: float) -> dict[str, float]:
    """The functionals written out frame by frame and run by run, with ``np.percentile``."""
    rows = rows.astype(np.float64)
    voiced = rows[:, P.LLD_NAMES.index("voiced")] > 0.5
    out = dict.fromkeys(F.names(), 0.0)
    seconds = len(rows) * frame_s

    def contour(prefix: str, values: np.ndarray, valid: np.ndarray) -> None:
        if not valid.any():
            return
        p20, p50, p80 = np.percentile(values[valid], [20, 50, 80])
        out.update({f"{prefix}_p20": p20, f"{prefix}_p50": p50, f"{prefix}_p80": p80})
        out[f"{prefix}_range_20_80"] = p80 - p20
        runs, current = [], None  # [sign, total change, steps]
        for t in range(1, len(values)):
            step = values[t] - values[t - 1]
            sign = np.sign(step) if valid[t] and valid[t - 1] else 0.0
            if current is not None and sign == current[0]:
                current[1] += step
                current[2] += 1
            else:
                current = [sign, step, 1]
                runs.append(current)
        for label, want in (("rise", 1.0), ("fall", -1.0)):
            slopes = [abs(total) / (n * frame_s) for sign, total, n in runs if sign == want]
            if slopes:
                out[f"{prefix}_{label}_mean"] = np.mean(slopes)
                out[f"{prefix}_{label}_std"] = np.std(slopes)

    f0, loud = col(rows, "f0_st"), col(rows, "loudness")
    contour("f0", f0, voiced)
    contour("loudness", loud, np.ones(len(rows), dtype=bool))
    if voiced.any():
        out["f0_mean"], out["f0_std"] = f0[voiced].mean(), f0[voiced].std()
    out["loudness_mean"], out["loudness_cov"] = loud.mean(), loud.std() / loud.mean()
    median = np.median(loud)
    peaks = [
        t
        for t in range(1, len(loud) - 1)
        if loud[t] > loud[t - 1] and loud[t] >= loud[t + 1] and loud[t] > median
    ]
    out["loudness_peaks_per_s"] = len(peaks) / seconds
    out["voiced_share"] = voiced.mean()
    out["voicing_mean"] = col(rows, "voicing").mean()
    segments = {True: [], False: []}
    for flag, group in itertools.groupby(voiced):
        segments[bool(flag)].append(len(list(group)) * frame_s)
    out["voiced_segments_per_s"] = len(segments[True]) / seconds
    for label, flag in (("voiced", True), ("unvoiced", False)):
        if segments[flag]:
            out[f"{label}_segment_mean_s"] = np.mean(segments[flag])
            out[f"{label}_segment_std_s"] = np.std(segments[flag])
    for name in ("alpha_ratio", "hammarberg", "slope_0_500", "slope_500_1500"):
        values = col(rows, name)
        if voiced.any():
            out[f"{name}_voiced_mean"] = values[voiced].mean()
            out[f"{name}_voiced_std"] = values[voiced].std()
        if not voiced.all():
            out[f"{name}_unvoiced_mean"] = values[~voiced].mean()
    return out


def test_functionals_agree_with_a_frame_by_frame_reference():
    """Noise, a rise-fall glide with pauses, a tone: every functional of the utterance and of
    every chunk equals the plain reference."""
    t = np.arange(SR) / SR
    wobble = harmonic(180 * 2 ** (np.sin(2 * np.pi * 3 * t) * 4 / 12), seconds=1.0)
    gated = wobble * (np.sin(2 * np.pi * 2.5 * t) > -0.6)
    audio = np.concatenate([white(0.5) * 0.2, gated, harmonic(260.0, 0.7), white(0.4, 2) * 0.1])
    rows = P.frame_descriptors(audio, SETTINGS)
    voiced = col(rows, "voiced")
    assert 0.3 < voiced.mean() < 0.8 and np.abs(np.diff(voiced)).sum() >= 6  # a real mix
    starts = chunk_starts(len(rows), 7, 62)
    ranges = [(0, len(rows))] + [(s, s + 62) for s in starts]
    got = np.vstack([F.functionals(rows, FRAME_S), F.chunk_functionals(rows, starts, 62, FRAME_S)])
    for i, (first, stop) in enumerate(ranges):
        want = reference_functionals(rows[first:stop], FRAME_S)
        np.testing.assert_allclose(
            got[i], [want[n] for n in F.names()], rtol=1e-5, atol=1e-4, err_msg=str(ranges[i])
        )
