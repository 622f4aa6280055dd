"""Dynamic chunking: C chunks of m frames from any utterance length."""

from __future__ import annotations

import numpy as np
import pytest

from deepemocluster.data.chunking import chunk_starts, chunk_utterance

C, M, MELS = 11, 62, 8


def frames(n: int, n_mels: int = MELS) -> np.ndarray:
    """Features whose value says which frame they come from (frame index + bin / 100)."""
    return (np.arange(n)[:, None] + np.arange(n_mels)[None, :] / 100).astype(np.float32) + 1


def test_shorter_than_one_chunk_is_padded_and_all_chunks_are_identical():
    x = frames(30)
    chunks = chunk_utterance(x, C, M)
    assert chunks.shape == (C, M, MELS)
    assert chunks.dtype == x.dtype
    for c in range(1, C):
        np.testing.assert_array_equal(chunks[c], chunks[0])
    np.testing.assert_array_equal(chunks[0, :30], x)
    assert (chunks[0, 30:] == 0).all()
    assert chunk_starts(30, C, M).tolist() == [0] * C


def test_a_single_frame_is_still_a_chunk():
    chunks = chunk_utterance(frames(1), C, M)
    assert chunks.shape == (C, M, MELS)
    np.testing.assert_array_equal(chunks[:, 0], np.repeat(frames(1), C, axis=0))
    assert (chunks[:, 1:] == 0).all()


def test_exactly_one_chunk_long():
    x = frames(M)
    chunks = chunk_utterance(x, C, M)
    assert chunk_starts(M, C, M).tolist() == [0] * C
    for c in range(C):
        np.testing.assert_array_equal(chunks[c], x)


def test_one_frame_more_than_a_chunk():
    x = frames(M + 1)
    starts = chunk_starts(M + 1, C, M)
    assert starts[0] == 0 and starts[-1] == 1
    assert set(starts.tolist()) == {0, 1}
    assert (np.diff(starts) >= 0).all()
    chunks = chunk_utterance(x, C, M)
    np.testing.assert_array_equal(chunks[0], x[:M])
    np.testing.assert_array_equal(chunks[-1], x[1:])  # the last chunk ends at the last frame


@pytest.mark.parametrize("n", [M * C, 700, 1000, 10_007, 123_456])
def test_long_utterance_is_covered_end_to_end_with_even_spacing(n):
    starts = chunk_starts(n, C, M)
    assert starts.dtype == np.int64 and len(starts) == C
    assert starts[0] == 0
    assert starts[-1] + M == n  # the last chunk ends at the last frame
    exact = (n - M) / (C - 1)
    steps = np.diff(starts)
    assert (np.abs(steps - exact) <= 1).all()
    assert np.abs(starts - np.arange(C) * exact).max() <= 0.5


def test_chunks_tile_an_utterance_of_exactly_c_times_m_frames():
    starts = chunk_starts(C * M, C, M)
    assert starts.tolist() == [c * M for c in range(C)]
    x = frames(C * M)
    np.testing.assert_array_equal(chunk_utterance(x, C, M).reshape(-1, MELS), x)


def test_long_chunks_hold_the_right_frames():
    x = frames(1000)
    chunks = chunk_utterance(x, C, M)
    for c, s in enumerate(chunk_starts(1000, C, M)):
        np.testing.assert_array_equal(chunks[c], x[s : s + M])
    np.testing.assert_array_equal(chunks[-1, -1], x[-1])


@pytest.mark.parametrize("n_chunks", [1, 2, 5, 11])
@pytest.mark.parametrize("m", [1, 7, 62])
def test_chunks_always_lie_inside_the_utterance(n_chunks, m):
    for n in range(1, 300):
        starts = chunk_starts(n, n_chunks, m)
        assert len(starts) == n_chunks
        assert (starts >= 0).all()
        assert (starts + m <= max(n, m)).all()
        assert (np.diff(starts) >= 0).all()
        if n_chunks > 1:
            assert starts[0] == 0
            assert starts[-1] == max(n - m, 0)
        assert chunk_utterance(frames(n, 2), n_chunks, m).shape == (n_chunks, m, 2)


def test_one_chunk_is_taken_from_the_middle():
    assert chunk_starts(30, 1, M).tolist() == [0]
    assert chunk_starts(M, 1, M).tolist() == [0]
    assert chunk_starts(M + 2, 1, M).tolist() == [1]
    assert chunk_starts(1000, 1, M).tolist() == [(1000 - M) // 2]
    x = frames(1000)
    chunks = chunk_utterance(x, 1, M)
    assert chunks.shape == (1, M, MELS)
    np.testing.assert_array_equal(chunks[0], x[469 : 469 + M])


def test_reference_settings_for_a_3_second_utterance():
    # ~190 frames at a 16 ms hop: 11 overlapping chunks; every frame is used.
    starts = chunk_starts(190, C, M)
    covered = np.zeros(190, bool)
    for s in starts:
        covered[s : s + M] = True
    assert covered.all()
    assert (np.diff(starts) < M).all()  # overlapping
