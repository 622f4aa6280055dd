"""The Python API, ``deepemocluster.load(...)``: from a run id, a checkpoint or an ONNX file its
``predict`` gives the rows of ``python -m deepemocluster.predict``; arrays are the same audio as
a file; long files give their segment rows; ``embed`` gives the run's final clustering of its
own training chunks; bad sources and inputs fail naming what and where."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import deepemocluster
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.errors import AudioError, CheckpointError, ConfigError, TrackingError
from deepemocluster.serving import predict
from deepemocluster.serving.inputs import InputError
from deepemocluster.serving.timeline import WHOLE_FILE, output_columns
from deepemocluster.training.run import run

pytestmark = pytest.mark.slow
AVD = ["arousal", "valence", "dominance"]
NUMBERS = [*AVD, "cluster_distance", "duration_s", "start_s", "end_s"]


def _cli(model: str, paths: list, out: Path, *extra: str) -> list[dict]:
    """``python -m deepemocluster.predict`` (its ``main``) on ``paths``: the CSV rows."""
    argv = ["--model", model, *map(str, paths), "--out", str(out), *extra]
    assert predict.main(argv) == 0
    with out.open() as f:
        return list(csv.DictReader(f))


def _assert_cli_rows(frame: pd.DataFrame, expected: list[dict]) -> None:
    """A DataFrame against the CLI's CSV rows, whose numbers are rounded to 4 decimals."""
    assert list(frame.columns) == output_columns(AVD) == list(expected[0])
    assert len(frame) == len(expected)
    # nullable numbers: a failed file's are missing (<NA>), not NaN
    assert {str(frame[c].dtype) for c in NUMBERS} == {"Float64"}
    assert str(frame["cluster"].dtype) == "Int64"
    for got, row in zip(frame.to_dict("records"), expected, strict=True):
        assert [got["path"], got["segment"], got["error"]] == [
            row["path"],
            row["segment"],
            row["error"],
        ]
        for col in [*NUMBERS, "cluster"]:
            if row[col] == "":
                assert pd.isna(got[col]), col
            elif col == "cluster":
                assert got[col] == int(row[col])
            else:
                assert got[col] == pytest.approx(float(row[col]), abs=5.1e-5), col


@pytest.fixture(scope="module")
def files(trained_run, tmp_path_factory) -> list[Path]:
    """Real WAVs, one re-encoded as 8 kHz stereo FLAC, a missing file and a corrupt one."""
    folder = tmp_path_factory.mktemp("api_files")
    audio, sr = sf.read(trained_run.wavs[0])
    flac = folder / "stereo_8k.flac"
    sf.write(flac, np.stack([audio[::2], audio[::2] * 0.5], axis=1), sr // 2)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt but nothing that decodes")
    return [*trained_run.wavs[1:5], flac, folder / "missing.wav", corrupt]


def test_from_a_run_a_checkpoint_or_onnx_the_cli_rows(
    trained_run, trained_onnx, files, tmp_path, monkeypatch
):
    by_run = deepemocluster.load(trained_run.run_id, tracking_uri=trained_run.uri).predict(files)
    cli = _cli(trained_run.run_id, files, tmp_path / "run.csv", "--tracking-uri", trained_run.uri)
    _assert_cli_rows(by_run, cli)
    assert by_run["error"].tolist()[-2:] == ["not_a_file", "unreadable"]
    assert by_run["cluster"].notna().sum() == len(files) - 2
    # the store from MLFLOW_TRACKING_URI, as for the CLI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.uri)
    pd.testing.assert_frame_equal(deepemocluster.load(trained_run.run_id).predict(files), by_run)

    by_file = deepemocluster.load(trained_run.checkpoint).predict(files)
    _assert_cli_rows(by_file, _cli(str(trained_run.checkpoint), files, tmp_path / "pt.csv"))
    pd.testing.assert_frame_equal(by_file, by_run)

    by_onnx = deepemocluster.load(trained_onnx).predict(files)  # .onnx: the ONNX backend
    _assert_cli_rows(by_onnx, _cli(str(trained_onnx), files, tmp_path / "onnx.csv"))
    ok = by_run["error"] == ""
    diff = (by_onnx.loc[ok, AVD] - by_run.loc[ok, AVD]).abs().to_numpy().max()
    assert diff < 1e-4 and by_onnx["cluster"].equals(by_run["cluster"])


def test_arrays_are_the_audio_of_the_same_samples_in_a_file(trained_run, tmp_path):
    model = deepemocluster.load(trained_run.checkpoint)
    audio, sr = sf.read(trained_run.wavs[5], dtype="float32")
    # another rate each way, mono and stereo: resampled by the code that reads files
    slow = audio[::2].copy()
    fast = librosa.resample(audio, orig_sr=sr, target_sr=44100)
    stereo = np.stack([fast, 0.25 * fast], axis=1)
    for samples, rate in ((slow, sr // 2), (stereo, 44100)):
        written = tmp_path / f"at_{rate}.wav"
        sf.write(written, samples, rate, subtype="FLOAT")
        from_file = model.predict(written)
        from_array = model.predict(samples, sample_rate=rate)
        assert from_array["path"].tolist() == ["<array 0>"] and from_file["error"][0] == ""
        pd.testing.assert_frame_equal(
            from_array.drop(columns="path"), from_file.drop(columns="path")
        )
    # files and arrays mixed: input order, each array named by its position
    mixed = model.predict([trained_run.wavs[5], slow, written], sample_rate=sr // 2)
    assert mixed["path"].tolist() == [str(trained_run.wavs[5]), "<array 1>", str(written)]
    # the array's rate is its own: half the samples at half the rate last as long
    assert mixed["duration_s"][1] == pytest.approx(mixed["duration_s"][0], abs=0.02)
    # a silent array is a row with an error, as a silent file is
    silent = model.predict([np.zeros(sr), audio], sample_rate=sr)
    assert silent["error"].tolist() == ["silent", ""] and silent["arousal"].isna().tolist() == [
        True,
        False,
    ]


def test_a_long_file_or_array_gives_its_segment_rows(trained_run, long_recordings, tmp_path):
    model = deepemocluster.load(trained_run.checkpoint)
    paths = [long_recordings.episode, trained_run.wavs[0], long_recordings.music]
    rows = model.predict(paths)
    _assert_cli_rows(rows, _cli(str(trained_run.checkpoint), paths, tmp_path / "long.csv"))
    episode = rows[rows["path"] == str(long_recordings.episode)]
    assert len(episode) > 4 and episode["segment"].tolist()[-1] == WHOLE_FILE
    assert episode["segment"].tolist()[:3] == ["0", "1", "2"]
    never = model.predict(paths, segment="never")
    assert never["segment"].tolist() == [WHOLE_FILE] * 3
    # the same recording as an array: the same segments and ratings
    audio, sr = sf.read(long_recordings.episode, dtype="float32")
    as_array = model.predict(audio, sample_rate=sr)
    pd.testing.assert_frame_equal(  # other batches around its segments: not to the last bit
        as_array.drop(columns="path"),
        episode.drop(columns="path").reset_index(drop=True),
        check_exact=False,
        atol=1e-5,
    )


def _training_files(trained_run) -> tuple[list[str], np.ndarray, int]:
    """The first training utterances (whole files), in the order of the final clustering, and
    its cluster of each of their chunks."""
    cfg = Checkpoint.load(trained_run.checkpoint).config()
    ids = (trained_run.run_dir / "utterances.txt").read_text().split()
    final = np.load(trained_run.run_dir / "assignments" / "final.npz")["assignments"]
    C = int(cfg.chunking.n_chunks)
    assert len(final) == len(ids) * C
    by_id = {u.id: u for u in load_corpus(cfg).manifest}
    first = [i for i, name in enumerate(ids) if by_id[name].start_s is None][:40]
    paths = [by_id[ids[i]].path for i in first]
    return paths, final.reshape(len(ids), C)[first], C


def test_embed_gives_the_final_clustering_of_the_training_chunks(trained_run):
    model = deepemocluster.load(trained_run.checkpoint)
    paths, expected, C = _training_files(trained_run)
    chunks = model.embed(paths, level="chunk")
    space = Checkpoint.load(trained_run.checkpoint).clusters
    width = Checkpoint.load(trained_run.checkpoint).config().model.head_dim
    assert chunks.vectors.shape == (len(paths) * C, width) and chunks.vectors.dtype == np.float32
    assert chunks.rows["chunk"].tolist() == list(range(C)) * len(paths)
    assert chunks.rows["path"].tolist() == [p for p in paths for _ in range(C)]
    # the clusters k-means gave these very chunks at the end of training
    got = chunks.rows["cluster"].to_numpy(dtype=np.int64).reshape(-1, C)
    np.testing.assert_array_equal(got, expected)
    # each vector, projected as the run's clustering did, lies at its distance from its centroid
    x = space.projection(chunks.vectors)
    distance = np.linalg.norm(x - space.centroids[got.ravel()], axis=1)
    np.testing.assert_allclose(chunks.rows["cluster_distance"], distance, atol=1e-4)
    times = chunks.rows[["start_s", "end_s"]].to_numpy(dtype=float)
    assert (times[:, 0] >= 0).all() and (times[:, 1] > times[:, 0]).all()

    # an utterance: the mean of its chunks' vectors, and predict's cluster (the chunks' vote)
    utterances = model.embed(paths, level="utterance")
    assert "chunk" not in utterances.rows
    np.testing.assert_allclose(
        utterances.vectors, chunks.vectors.reshape(len(paths), C, -1).mean(1), atol=1e-6
    )
    rows = model.predict(paths, segment="never")
    assert utterances.rows["cluster"].tolist() == rows["cluster"].tolist()
    np.testing.assert_allclose(
        utterances.rows["cluster_distance"].to_numpy(float),
        rows["cluster_distance"].to_numpy(float),
        atol=1e-6,
    )
    assert utterances.rows["end_s"].tolist() == rows["end_s"].tolist()


def test_embed_of_long_files_arrays_and_bad_inputs(trained_run, long_recordings, tmp_path):
    model = deepemocluster.load(trained_run.checkpoint)
    audio, sr = sf.read(trained_run.wavs[0], dtype="float32")
    inputs = [long_recordings.episode, tmp_path / "gone.wav", audio, long_recordings.music]
    out = model.embed(inputs, sample_rate=sr, level="utterance")
    segments = model.predict(long_recordings.episode)
    segments = segments[segments["segment"] != WHOLE_FILE]  # embed has no whole-file row
    n = len(segments)
    assert out.rows["path"].tolist() == [str(long_recordings.episode)] * n + [
        str(tmp_path / "gone.wav"),
        "<array 2>",
        str(long_recordings.music),
    ]
    assert out.rows["segment"].tolist()[:n] == segments["segment"].tolist()
    assert out.rows["start_s"].tolist()[:n] == segments["start_s"].tolist()
    assert out.rows["cluster"].tolist()[:n] == segments["cluster"].tolist()
    assert out.rows["error"].tolist()[n:] == ["not_a_file", "", "no speech found"]
    assert np.isfinite(out.vectors[:n]).all() and np.isfinite(out.vectors[n + 1]).all()
    assert np.isnan(out.vectors[[n, n + 2]]).all()  # no vector where there is no audio
    # chunks of a segment lie inside it
    chunks = model.embed(long_recordings.episode, level="chunk")
    first = chunks.rows[chunks.rows["segment"] == "0"]
    start, end = segments.iloc[0][["start_s", "end_s"]]
    assert len(first) == 3 and (first["start_s"] >= start - 1e-3).all()
    assert (first["end_s"] <= end + 1e-3).all()


def test_embed_of_models_without_a_clustering(trained_run, trained_onnx, siamese_cfg, tmp_path):
    wavs = trained_run.wavs[:3]
    plain = replace(Checkpoint.load(trained_run.checkpoint), clusters=None)
    plain.save(tmp_path / "unclustered.pt")
    out = deepemocluster.load(tmp_path / "unclustered.pt").embed(wavs)
    assert out.rows["cluster"].isna().all() and out.rows["cluster_distance"].isna().all()
    clustered = deepemocluster.load(trained_run.checkpoint).embed(wavs)
    np.testing.assert_array_equal(out.vectors, clustered.vectors)  # the same head, no clusters

    with pytest.raises(CheckpointError, match=r"model\.onnx: .* not embeddings"):
        deepemocluster.load(trained_onnx).embed(wavs)

    # a Siamese run: its head's embeddings, no clustering
    cfg = siamese_cfg("train.epochs=1")
    run(cfg)
    siamese = deepemocluster.load(Path(cfg.tracking.runs_dir) / "tiny" / "checkpoint_best.pt")
    out = siamese.embed(wavs, level="utterance")
    assert out.vectors.shape == (3, cfg.siamese.embed_dim) and np.isfinite(out.vectors).all()
    assert out.rows["cluster"].isna().all()
    rows = siamese.predict(wavs)
    assert rows["error"].tolist() == [""] * 3 and rows["cluster"].isna().all()
    assert rows[AVD].notna().all().all()


def test_bad_sources_and_inputs_are_named(trained_run, files, tmp_path):
    with pytest.raises(TrackingError, match="cannot fetch the checkpoint of run 'no-such-run'"):
        deepemocluster.load("no-such-run", tracking_uri=trained_run.uri)
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*missing\.pt"):
        deepemocluster.load(tmp_path / "missing.pt")
    (tmp_path / "garbage.onnx").write_bytes(b"not protobuf")
    with pytest.raises(CheckpointError, match=r"garbage\.onnx: not a readable ONNX model"):
        deepemocluster.load(tmp_path / "garbage.onnx")
    with pytest.raises(CheckpointError, match=r"checkpoint_best\.pt: not a readable ONNX model"):
        deepemocluster.load(trained_run.checkpoint, backend="onnx")
    with pytest.raises(CheckpointError, match="model source 42: expected an MLflow run id"):
        deepemocluster.load(42)
    with pytest.raises(InputError, match="backend must be one of torch, onnx, got 'tf'"):
        deepemocluster.load(trained_run.checkpoint, backend="tf")

    model = deepemocluster.load(trained_run.checkpoint)
    good = str(trained_run.wavs[0])
    with pytest.raises(InputError, match=r"input 1: an array of shape \(2, 16000\).*\.T"):
        model.predict([good, np.zeros((2, 16000))], sample_rate=16000)
    with pytest.raises(InputError, match=r"input 0: an array of shape \(4, 4, 4\)"):
        model.predict(np.zeros((4, 4, 4)), sample_rate=16000)
    with pytest.raises(InputError, match="input 0: an array of <U1; audio samples are real"):
        model.predict(np.array(["a", "b"]), sample_rate=16000)
    with pytest.raises(InputError, match="input 1: a float; expected a file path or a numpy"):
        model.predict([good, 0.5])
    with pytest.raises(InputError, match="arrays need their sample_rate"):
        model.predict([good, np.ones(16000)])
    with pytest.raises(InputError, match="sample_rate: 0; expected a positive"):
        model.predict(np.ones(16000), sample_rate=0)
    with pytest.raises(InputError, match="sample_rate is for arrays"):
        model.predict(good, sample_rate=16000)
    with pytest.raises(ConfigError, match="segment must be one of auto, always, never"):
        model.predict(good, segment="sometimes")
    with pytest.raises(InputError, match="level must be one of chunk, utterance"):
        model.embed(good, level="frame")

    # a missing or corrupt file among others: a row with its reason, the others rated …
    rows = model.predict(files)
    assert rows["error"].tolist() == [""] * (len(files) - 2) + ["not_a_file", "unreadable"]
    # … or, when asked, the first one raised, naming it
    with pytest.raises(AudioError, match=r"missing\.wav: not_a_file"):
        model.predict(files, errors="raise")
    assert model.predict(files[:2], errors="raise")["error"].tolist() == ["", ""]


def test_the_readme_example_runs_and_gives_the_cli_rows(trained_run, tmp_path, monkeypatch):
    """The README's "Python API" block, run where the quick start leaves its run and corpus."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(trained_run.run_dir)
    (tmp_path / "runs" / "demo_corpus").symlink_to(trained_run.corpus_root)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    wavs = scope["wavs"]
    assert len(wavs) == 3
    _assert_cli_rows(scope["rows"], _cli(str(scope["checkpoint"]), wavs, tmp_path / "cli.csv"))
    same = scope["same"].drop(columns="path")
    pd.testing.assert_frame_equal(same, scope["rows"].drop(columns="path").iloc[:1])
    assert scope["emb"].vectors.shape[0] == 3
    assert scope["emb"].rows["cluster"].tolist() == scope["rows"]["cluster"].tolist()
