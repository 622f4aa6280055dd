"""Audio decoding: the bad-audio matrix, resampling, and mel features."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from deepemocluster.data.audio import audio_seconds, load_audio, mel_features, stream_audio
from deepemocluster.errors import AudioError

SR = 16000
N_FFT = 512


def peak_frequency(audio: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def assert_usable(audio: np.ndarray, seconds: float, tolerance: float = 0.03) -> None:
    """16 kHz mono float32, peak exactly 1, length within ``tolerance`` of the duration."""
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() == pytest.approx(1.0, abs=1e-6)
    assert abs(len(audio) - seconds * SR) <= tolerance * seconds * SR, len(audio)


# --- files that load ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, tolerance",
    [
        ("pcm16.wav", {}, 0.0),
        ("stereo.wav", {"channels": 2}, 0.0),
        ("six_channels.wav", {"channels": 6}, 0.0),
        ("rate8k.wav", {"sr": 8000}, 0.0),
        ("rate22k.wav", {"sr": 22050}, 0.001),
        ("rate48k.wav", {"sr": 48000}, 0.0),
        ("u8.wav", {"subtype": "PCM_U8"}, 0.0),
        ("pcm24.wav", {"subtype": "PCM_24"}, 0.0),
        ("pcm32.wav", {"subtype": "PCM_32"}, 0.0),
        ("float.wav", {"subtype": "FLOAT"}, 0.0),
        ("double.wav", {"subtype": "DOUBLE"}, 0.0),
        ("clip.flac", {"sr": 44100}, 0.001),
        ("clip.ogg", {"sr": 22050}, 0.03),
        ("clip.mp3", {"sr": 44100}, 0.05),
        ("quiet.wav", {"amp": 0.001}, 0.0),
    ],
)
def test_readable_files_become_16k_mono_peak_normalised(write_audio, name, kwargs, tolerance):
    seconds = 0.5
    path = write_audio(name, seconds, freq=500.0, **kwargs)
    audio = load_audio(path, SR)
    assert_usable(audio, seconds, tolerance)
    # still the same 500 Hz tone: decoding, down-mixing and resampling kept the content
    assert peak_frequency(audio) == pytest.approx(500.0, abs=SR / len(audio) + 1)
    # and no DC offset (an unsigned 8-bit file read as signed would sit at +-0.5)
    assert abs(float(audio.mean())) < 0.02


@pytest.mark.parametrize("sr, freq", [(8000, 1000.0), (22050, 3100.0), (48000, 5000.0)])
def test_resampled_tone_keeps_its_frequency(write_audio, sr, freq):
    audio = load_audio(write_audio(f"tone{sr}.wav", 1.0, sr=sr, freq=freq), SR)
    assert len(audio) == SR
    assert peak_frequency(audio) == pytest.approx(freq, abs=2.0)


def test_lossless_formats_decode_to_the_written_samples(write_audio, tone):
    original = tone(0.25, freq=330.0)
    expected = original / np.abs(original).max()
    for name, subtype, atol in [("a.wav", "PCM_16", 1e-3), ("a.flac", "PCM_24", 1e-5)]:
        audio = load_audio(write_audio(name, data=original, subtype=subtype), SR)
        np.testing.assert_allclose(audio, expected, atol=atol)


def test_stereo_is_the_mean_of_its_channels(write_audio, tone):
    left = tone(0.2, freq=300.0)
    right = tone(0.2, freq=700.0, amp=0.25)
    audio = load_audio(write_audio("lr.wav", data=np.stack([left, right], 1), subtype="FLOAT"), SR)
    mono = (left + right) / 2
    np.testing.assert_allclose(audio, mono / np.abs(mono).max(), atol=1e-6)


def test_short_clip_loads_if_long_enough_and_is_too_short_otherwise(write_audio):
    path = write_audio("short.wav", 0.05)  # 800 samples
    assert_usable(load_audio(path, SR, min_samples=N_FFT), 0.05, 0.0)
    with pytest.raises(AudioError) as err:
        load_audio(path, SR, min_samples=SR // 10)
    assert err.value.reason == "too_short"
    assert err.value.path == str(path)


def test_min_samples_counts_samples_after_resampling(write_audio):
    path = write_audio("short8k.wav", 0.05, sr=8000)  # 400 samples at 8 kHz = 800 at 16 kHz
    assert len(load_audio(path, SR, min_samples=800)) == 800
    with pytest.raises(AudioError, match="too_short"):
        load_audio(path, SR, min_samples=801)


# --- files that cannot be used -----------------------------------------------------------------


def test_truncated_header(write_audio):
    path = write_audio("trunc.wav", 0.2)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.reason == "unreadable"
    assert str(path) in str(err.value)


def test_header_only_wav_has_no_samples(write_audio):
    path = write_audio("header_only.wav", 0.2)
    path.write_bytes(path.read_bytes()[:44])
    with pytest.raises(AudioError) as err:
        load_audio(path, SR, min_samples=N_FFT)
    assert err.value.reason in {"too_short", "unreadable"}


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.reason == "empty_file"


def test_text_file_with_audio_suffix(tmp_path):
    path = tmp_path / "fake.flac"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.reason == "unreadable"


def test_all_zeros_is_silent(write_audio):
    path = write_audio("zeros.wav", data=np.zeros(SR // 4))
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.reason == "silent"


def test_opposite_phase_stereo_cancels_to_silence(write_audio, tone):
    x = tone(0.2)
    path = write_audio("cancel.wav", data=np.stack([x, -x], 1), subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):
        load_audio(path, SR)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(write_audio, tone, bad):
    x = tone(0.2).astype(np.float32)
    x[100] = bad
    path = write_audio("nan.wav", data=x, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.reason == "non_finite"


def test_non_finite_samples_are_caught_before_resampling(write_audio, tone):
    x = tone(0.2, sr=8000).astype(np.float32)
    x[50] = np.nan
    with pytest.raises(AudioError, match="non_finite"):
        load_audio(write_audio("nan8k.wav", data=x, sr=8000, subtype="FLOAT"), SR)


def test_directory_named_like_audio(tmp_path):
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "x.wav", SR)
    assert err.value.reason == "not_a_file"


def test_missing_file(tmp_path):
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "gone.wav", SR)
    assert err.value.reason == "not_a_file"


def test_symlink_loop(tmp_path):
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "a.wav", SR)
    assert err.value.reason == "not_a_file"


def test_symlink_to_a_good_file_loads(write_audio, tmp_path):
    target = write_audio("real.wav", 0.2)
    (tmp_path / "link.wav").symlink_to(target)
    np.testing.assert_array_equal(load_audio(tmp_path / "link.wav", SR), load_audio(target, SR))


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading the file",
)
def test_unreadable_file(write_audio):
    path = write_audio("locked.wav", 0.2)
    path.chmod(0)
    try:
        with pytest.raises(AudioError) as err:
            load_audio(path, SR)
        assert err.value.reason == "permission_denied"
    finally:
        path.chmod(0o644)


def test_audio_error_message_names_the_file_and_reason(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert str(err.value).startswith(f"{path}: empty_file")


# --- spans and streams of long files -----------------------------------------------------------


def _chirp(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A rising tone: every stretch of it differs, so an offset error cannot go unnoticed."""
    t = np.arange(round(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * (100 * t + 40 * t**2))
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


@pytest.mark.parametrize("sr, channels", [(16000, 1), (44100, 2)])
def test_a_span_is_the_same_samples_as_the_whole_file_there(write_audio, sr, channels):
    path = write_audio(f"long{sr}.flac", data=_chirp(6.0, sr, channels), sr=sr, subtype="PCM_24")
    whole = load_audio(path, SR)
    span = load_audio(path, SR, start_s=2.5, end_s=4.0)
    assert len(span) == round(1.5 * SR)
    piece = whole[round(2.5 * SR) : round(4.0 * SR)]
    inner = slice(SR // 50, -SR // 50)  # 20 ms at each end are resampled without their outside
    np.testing.assert_allclose(span[inner], (piece / np.abs(piece).max())[inner], atol=2e-3)
    assert audio_seconds(path) == pytest.approx(6.0)


def test_a_span_past_the_end_is_too_short(write_audio):
    path = write_audio("short.wav", 1.0)
    with pytest.raises(AudioError, match="too_short"):
        load_audio(path, SR, min_samples=N_FFT, start_s=1.5, end_s=3.0)


@pytest.mark.parametrize("sr, channels", [(16000, 1), (22050, 1), (48000, 2)])
def test_stream_never_returns_more_than_a_block(write_audio, sr, channels):
    """A long file comes in blocks of exactly ``block`` samples (the last shorter), at 16 kHz,
    mono, at its own level, and the blocks put together are the whole file."""
    seconds, block = 20.0, 4096
    path = write_audio(
        f"stream{sr}.wav", data=_chirp(seconds, sr, channels), sr=sr, subtype="FLOAT"
    )
    blocks = list(stream_audio(path, SR, block))
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert max(len(b) for b in blocks) == block
    assert all(len(b) == block for b in blocks[:-1]) and 0 < len(blocks[-1]) <= block
    streamed = np.concatenate(blocks)
    assert abs(len(streamed) - seconds * SR) <= 1
    whole = load_audio(path, SR)  # peak-normalised: compare shapes, not levels
    level = np.abs(streamed).max()
    assert level == pytest.approx(0.375 if channels == 2 else 0.5, rel=0.02)  # mean of [x, x/2]
    np.testing.assert_allclose(streamed[: len(whole)] / level, whole[: len(streamed)], atol=2e-3)


def test_stream_names_a_file_that_breaks_off(write_audio):
    path = write_audio("cut.flac", data=_chirp(10.0, SR), subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AudioError, match="unreadable") as err:
        for _ in stream_audio(path, SR, 4096):
            pass
    assert str(path) in str(err.value)


def test_stream_rejects_non_finite_samples(write_audio):
    x = _chirp(3.0, SR).astype(np.float32)
    x[30000] = np.nan
    with pytest.raises(AudioError, match="non_finite"):
        list(stream_audio(write_audio("nan_long.wav", data=x, subtype="FLOAT"), SR, 4096))


# --- mel features -------------------------------------------------------------------------------


def mel(audio: np.ndarray, kind: str, **over) -> np.ndarray:
    settings = dict(
        sample_rate=SR,
        n_mels=40,
        n_fft=N_FFT,
        hop_length=256,
        fmin=0.0,
        fmax=None,
        kind=kind,
        log_offset=1e-6,
    )
    return mel_features(audio, **{**settings, **over})


@pytest.mark.parametrize("n_samples", [512, 4000, 16000, 16001, 40000])
def test_mel_shape(tone, n_samples):
    audio = tone(n_samples / SR).astype(np.float32)
    feats = mel(audio, "log_mel")
    assert feats.shape == (1 + n_samples // 256, 40)
    assert feats.dtype == np.float32
    assert feats.flags["C_CONTIGUOUS"]
    assert mel(audio, "mel", hop_length=160, n_mels=64).shape == (1 + n_samples // 160, 64)


def test_log_mel_is_log_of_mel_plus_offset(tone):
    audio = tone(0.5, freq=700.0).astype(np.float32)
    power = mel(audio, "mel")
    assert (power >= 0).all()
    for offset in (1e-6, 1e-2):
        np.testing.assert_allclose(
            mel(audio, "log_mel", log_offset=offset), np.log(power + offset), rtol=1e-5, atol=1e-5
        )


def test_mel_energy_sits_in_the_band_of_the_tone(tone):
    low = mel(tone(0.5, freq=200.0).astype(np.float32), "mel").mean(axis=0)
    high = mel(tone(0.5, freq=5000.0).astype(np.float32), "mel").mean(axis=0)
    assert np.argmax(low) < np.argmax(high)
    assert np.argmax(low) < 10 and np.argmax(high) > 25


def test_features_of_a_loaded_file(write_audio):
    audio = load_audio(write_audio("f.wav", 0.3, sr=8000), SR, min_samples=N_FFT)
    feats = mel(audio, "log_mel")
    assert feats.shape == (1 + len(audio) // 256, 40)
    assert np.isfinite(feats).all()
    assert feats.min() >= np.log(1e-6) - 1e-4


def test_soundfile_sees_what_the_fixture_wrote(write_audio):
    """Guards the matrix above: the fixture really writes the asked-for format and subtype."""
    info = sf.info(write_audio("chk.wav", 0.1, sr=8000, channels=2, subtype="PCM_U8"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_U8")
    assert sf.info(write_audio("chk.mp3", 0.1)).format == "MP3"
    assert sf.info(write_audio("chk.ogg", 0.1)).format == "OGG"
