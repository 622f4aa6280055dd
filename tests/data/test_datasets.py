"""ChunkDataset over a memory-mapped pack, and streamed reads from a real feature store."""

from __future__ import annotations

import gc
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader

from deepemocluster.data.chunking import chunk_starts
from deepemocluster.data.datasets import ChunkBatches, ChunkDataset
from deepemocluster.data.features import (
    ArrayRows,
    FeatureSettings,
    FeatureStore,
    PackedFeatures,
    StoreFile,
)
from tests.support.memory_probe import mapped_rss_kib

C, M, MELS, CLIP = 5, 62, 6, 3.0
LENGTHS = [30, 62, 63, 400, 100]


@pytest.fixture
def packed(tmp_path) -> PackedFeatures:
    """A real memory-mapped pack of five utterances (one shorter than a chunk)."""
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    path = tmp_path / "pack.npy"
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(int(offsets[-1]), MELS)
    )
    out[:] = rng.normal(4.0, 2.0, size=out.shape)
    out.flush()
    del out
    return PackedFeatures("test", np.load(path, mmap_mode="r"), offsets)


def stats(packed: PackedFeatures) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(packed.frames, dtype=np.float64)
    return frames.mean(0).astype(np.float32), frames.std(0).astype(np.float32)


def expected_chunks(packed, row, mean, std, n_chunks=C, m=M, clip=CLIP) -> np.ndarray:
    return chunks_of(np.asarray(packed.utterance(row)), mean, std, n_chunks, m, clip)


def chunks_of(x: np.ndarray, mean, std, n_chunks=C, m=M, clip=CLIP) -> np.ndarray:
    """Manual normalisation + NaN→0 + clip, then chunking with zero padding at the end."""
    x = x.astype(np.float32)
    z = np.nan_to_num((x - mean) / std, nan=0.0, posinf=clip, neginf=-clip)
    z = np.clip(z, -clip, clip)
    out = np.zeros((n_chunks, m, x.shape[1]), np.float32)
    for c, s in enumerate(chunk_starts(len(x), n_chunks, m)):
        piece = z[s : s + m]
        out[c, : len(piece)] = piece
    return out


def test_item_is_chunks_target_and_index(packed):
    mean, std = stats(packed)
    targets = np.arange(15, dtype=np.float64).reshape(5, 3)
    ds = ChunkDataset(packed, range(5), mean, std, C, M, CLIP, targets=targets)
    assert len(ds) == 5 and ds.n_total_chunks == 5 * C
    for i in range(5):
        chunks, target, index = ds[i]
        assert isinstance(chunks, torch.Tensor) and chunks.dtype == torch.float32
        assert chunks.shape == (C, M, MELS)
        assert index == i
        assert target.dtype == torch.float32
        np.testing.assert_array_equal(target.numpy(), targets[i])
        np.testing.assert_allclose(
            chunks.numpy(), expected_chunks(packed, i, mean, std), rtol=1e-6, atol=1e-6
        )


def test_item_without_targets_is_chunks_and_index(packed):
    mean, std = stats(packed)
    ds = ChunkDataset(packed, [3, 0, 1], mean, std, C, M, CLIP)
    item = ds[1]
    assert len(item) == 2 and item[1] == 1
    # row order: dataset index 1 is packed utterance 0
    np.testing.assert_allclose(item[0].numpy(), expected_chunks(packed, 0, mean, std), atol=1e-6)
    np.testing.assert_allclose(ds[0][0].numpy(), expected_chunks(packed, 3, mean, std), atol=1e-6)


def test_targets_must_match_rows(packed):
    mean, std = stats(packed)
    with pytest.raises(ValueError, match="3 target rows for 2 utterances"):
        ChunkDataset(packed, [0, 1], mean, std, C, M, CLIP, targets=np.zeros((3, 3)))


def test_nan_targets_pass_through_for_unlabelled_rows(packed):
    mean, std = stats(packed)
    targets = np.array([[1.0, 2.0, 3.0], [np.nan] * 3])
    ds = ChunkDataset(packed, [0, 1], mean, std, C, M, CLIP, targets=targets)
    assert torch.isnan(ds[1][1]).all() and not torch.isnan(ds[0][1]).any()


def test_padding_of_a_short_utterance_is_zero_after_normalisation(packed):
    mean, std = stats(packed)
    assert np.abs(mean).min() > 1  # so a pad of raw zeros would not be zero after the z-score
    chunks = ChunkDataset(packed, [0], mean, std, C, M, CLIP)[0][0].numpy()
    assert LENGTHS[0] < M
    assert (chunks[:, LENGTHS[0] :] == 0).all()
    assert (chunks[:, : LENGTHS[0]] != 0).any(axis=(1, 2)).all()
    for c in range(1, C):
        np.testing.assert_array_equal(chunks[c], chunks[0])


def test_chunk_batch_equals_rows_of_the_items(packed):
    mean, std = stats(packed)
    ds = ChunkDataset(packed, [4, 2, 0, 3], mean, std, C, M, CLIP)
    ids = np.random.default_rng(1).permutation(ds.n_total_chunks)[:13]
    chunks, returned = ds.chunk_batch(ids)
    assert chunks.shape == (13, M, MELS)
    np.testing.assert_array_equal(returned.numpy(), ids)
    for j, gid in enumerate(ids):
        utt, c = divmod(int(gid), C)
        torch.testing.assert_close(chunks[j], ds[utt][0][c], rtol=0, atol=0)
    batches = ChunkBatches(ds)
    assert len(batches) == ds.n_total_chunks
    torch.testing.assert_close(batches[list(ids)][0], chunks, rtol=0, atol=0)


def test_values_are_clipped(packed):
    mean, std = stats(packed)
    ds = ChunkDataset(packed, [3], mean, std, C, M, 0.5)
    chunks = ds[0][0].numpy()
    assert chunks.max() == pytest.approx(0.5) and chunks.min() == pytest.approx(-0.5)
    np.testing.assert_allclose(
        chunks, expected_chunks(packed, 3, mean, std, clip=0.5), rtol=1e-6, atol=1e-6
    )


def test_nan_becomes_zero_and_inf_is_clipped(tmp_path):
    x = np.ones((80, 2), np.float32)
    x[::2, 0] = 3.0
    x[5, 0] = np.nan
    x[6, 1] = np.inf
    x[7, 1] = -np.inf
    x[8, 1] = 1e9
    path = tmp_path / "odd.npy"
    np.save(path, x)
    packed = PackedFeatures("odd", np.load(path, mmap_mode="r"), np.array([0, 80]))
    mean, std = np.array([2.0, 1.0], np.float32), np.array([1.0, 0.5], np.float32)
    chunks = ChunkDataset(packed, [0], mean, std, 1, 80, CLIP)[0][0].numpy()[0]
    assert np.isfinite(chunks).all()
    assert chunks[5, 0] == 0.0
    assert chunks[6, 1] == CLIP and chunks[7, 1] == -CLIP and chunks[8, 1] == CLIP
    assert chunks[0, 0] == 1.0 and chunks[1, 0] == -1.0  # (3 - 2) / 1, (1 - 2) / 1
    assert chunks[0, 1] == 0.0  # (1 - 1) / 0.5


def test_works_with_a_data_loader(packed):
    mean, std = stats(packed)
    ds = ChunkDataset(packed, range(5), mean, std, C, M, CLIP, targets=np.ones((5, 3)))
    chunks, targets, index = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert chunks.shape == (4, C, M, MELS) and targets.shape == (4, 3)
    assert index.tolist() == [0, 1, 2, 3]


# --- streamed reads from a real store against the in-RAM path ----------------------------------

STORE_MELS = 16
STORE_LENGTHS = [30, 62, 1, 63, 400, 100, 250, 61, 900]  # shorter than, equal to, longer than M


@pytest.fixture
def store_pack(tmp_path) -> PackedFeatures:
    """A pack that ``FeatureStore.pack`` writes from entries holding NaN, ±inf and outliers."""
    settings = FeatureSettings("log_mel", 16000, STORE_MELS, 512, 256, 0.0, None, 1e-6)
    store = FeatureStore(tmp_path / "store", settings)
    rng = np.random.default_rng(7)
    keys = []
    for i, n in enumerate(STORE_LENGTHS):
        x = rng.normal(4.0, 2.0, size=(n, STORE_MELS)).astype(np.float32)
        odd = rng.random(x.shape)
        x[odd < 0.01] = np.nan
        x[(odd >= 0.01) & (odd < 0.02)] = np.inf
        x[(odd >= 0.02) & (odd < 0.03)] = -np.inf
        x[(odd >= 0.03) & (odd < 0.04)] = 1e6
        key = f"{i:024x}"
        store.entry_path(key).parent.mkdir(parents=True, exist_ok=True)
        np.save(store.entry_path(key), x)
        keys.append(key)
    return store.pack(keys)


def in_ram(packed: PackedFeatures) -> PackedFeatures:
    """The same pack read fully into RAM (a plain read, no memory map)."""
    frames = np.load(packed.frames.filename)
    assert not isinstance(frames, np.memmap)
    return PackedFeatures(packed.name, frames, packed.offsets)


def expected_by_id(ram: PackedFeatures, rows, mean, std) -> np.ndarray:
    """(n_total_chunks, M, mels): every chunk computed from the in-RAM frames, by global id."""
    per_utterance = [chunks_of(ram.utterance(r), mean, std) for r in rows]
    return np.concatenate(per_utterance)


def store_dataset(packed: PackedFeatures, rows) -> ChunkDataset:
    mean = np.linspace(3.0, 5.0, STORE_MELS, dtype=np.float32)  # nonzero: padding must stay 0
    std = np.linspace(0.5, 2.5, STORE_MELS, dtype=np.float32)
    return ChunkDataset(packed, rows, mean, std, C, M, CLIP)


def test_streamed_store_serves_the_same_tensors_as_the_in_ram_path(store_pack):
    rows = [8, 2, 0, 5, 3, 1, 7, 4, 6]
    ds, ram = store_dataset(store_pack, rows), in_ram(store_pack)
    assert isinstance(ds.source, StoreFile)  # the os.preadv path, not a memory-map slice
    expected = torch.from_numpy(expected_by_id(ram, rows, ds.mean, ds.std))
    assert (expected == 0).all(axis=2).any() and (expected.abs() == CLIP).any()  # pads, clips
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], expected[i * C : (i + 1) * C])
    ids = np.random.default_rng(3).permutation(ds.n_total_chunks)
    chunks, returned = ds.chunk_batch(ids)
    assert torch.equal(chunks, expected[ids]) and torch.equal(returned, torch.from_numpy(ids))
    from_ram = store_dataset(ram, rows)
    assert isinstance(from_ram.source, ArrayRows)
    assert torch.equal(from_ram.chunk_batch(ids)[0], chunks)


def test_reads_leave_the_store_pages_out_of_this_process(store_pack):
    ds = store_dataset(store_pack, range(len(STORE_LENGTHS)))
    ds.chunk_batch(np.arange(ds.n_total_chunks))
    assert mapped_rss_kib(store_pack.frames.filename) == 0
    np.array(store_pack.frames)  # reading through the memory map, as the old path did, maps pages
    assert mapped_rss_kib(store_pack.frames.filename) > 0


def test_a_pickled_dataset_carries_the_path_not_the_frames(store_pack):
    rows = [4, 0, 8, 2]
    ds = store_dataset(store_pack, rows)
    ds.chunk_batch(np.arange(3))  # the descriptor is open in this process
    blob = pickle.dumps(ds)
    assert len(blob) < store_pack.frames.nbytes / 10
    clone = pickle.loads(blob)
    ids = np.random.default_rng(4).permutation(ds.n_total_chunks)
    expected = expected_by_id(in_ram(store_pack), rows, ds.mean, ds.std)[ids]
    assert torch.equal(clone.chunk_batch(ids)[0], torch.from_numpy(expected))
    assert torch.equal(ds.chunk_batch(ids)[0], torch.from_numpy(expected))


def test_data_loader_workers_read_the_store(store_pack):
    rows = list(range(len(STORE_LENGTHS)))[::-1]
    ds = store_dataset(store_pack, rows)
    ds.chunk_batch(np.arange(2))  # workers fork with the parent's descriptor open
    ids = np.random.default_rng(5).permutation(ds.n_total_chunks)
    batches = BatchSampler(ids.tolist(), batch_size=7, drop_last=False)
    loader = DataLoader(ChunkBatches(ds), sampler=batches, batch_size=None, num_workers=2)
    served = list(loader)
    expected = torch.from_numpy(expected_by_id(in_ram(store_pack), rows, ds.mean, ds.std))
    assert torch.equal(torch.cat([ids for _, ids in served]), torch.from_numpy(ids))
    assert torch.equal(torch.cat([x for x, _ in served]), expected[ids])
    assert torch.equal(ds.chunk_batch(ids[:5])[0], expected[ids[:5]])  # the parent still reads


def test_the_descriptor_opens_on_demand_and_closes(store_pack):
    path = store_pack.frames.filename
    held = _descriptors_to(path)  # the memory map keeps a descriptor of its own
    ds = store_dataset(store_pack, [0, 1])
    assert _descriptors_to(path) == held
    first = ds.chunk_batch(np.arange(4))[0]
    assert _descriptors_to(path) == held + 1
    ds.chunk_batch(np.arange(4, 8))
    assert _descriptors_to(path) == held + 1  # one per process, reused
    ds.source.close()
    assert _descriptors_to(path) == held
    assert torch.equal(ds.chunk_batch(np.arange(4))[0], first)  # reopened
    del ds
    gc.collect()
    assert _descriptors_to(path) == held


def test_a_truncated_store_is_an_error_not_zeros(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.ones((100, 2), np.float32))
    packed = PackedFeatures("short", np.load(path, mmap_mode="r"), np.array([0, 100]))
    ds = ChunkDataset(packed, [0], np.zeros(2, np.float32), np.ones(2, np.float32), 1, 100, CLIP)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 8 * 4)
    with pytest.raises(EOFError, match="short.npy"):
        ds.chunk_batch(np.array([0]))


def _descriptors_to(path: str) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _link(fd) == os.path.realpath(path))


def _link(fd: Path) -> str | None:
    try:
        return os.readlink(fd)
    except OSError:  # closed between listing and reading
        return None
