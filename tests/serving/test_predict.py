"""Prediction on the rating scale in every output path (torch, ONNX, the CLI with either
backend), the ONNX backend through ``python -m deepemocluster.predict --backend onnx``, and long
recordings: a row per segment, the whole-file row and the timeline pictures."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.segments import SegmentSettings, segment_file
from deepemocluster.errors import CheckpointError
from deepemocluster.serving import figures, predict
from deepemocluster.serving.api import Model
from deepemocluster.serving.backend import load_checkpoint
from deepemocluster.serving.export import main as export_main
from deepemocluster.serving.timeline import output_columns

AVD = ["arousal", "valence", "dominance"]


@pytest.mark.slow
def test_rating_scale_from_the_checkpoint_or_the_manifests_scale(trained_run, tmp_path):
    assert Checkpoint.load(trained_run.checkpoint).rating_range == (1.0, 7.0)
    raw = torch.load(trained_run.checkpoint, weights_only=True)
    for saved, expected in ((None, (1.0, 7.0)), (torch.tensor([2.0, 5.0]), (2.0, 5.0))):
        if saved is None:  # written before the range was recorded
            raw.pop("rating_range")
        else:
            raw["rating_range"] = saved
        torch.save(raw, tmp_path / "c.pt")
        assert Checkpoint.load(tmp_path / "c.pt").rating_range == expected
    for bad in ([4.0, 4.0], [1.0, 7.0, 9.0]):
        raw["rating_range"] = torch.tensor(bad)
        torch.save(raw, tmp_path / "c.pt")
        with pytest.raises(CheckpointError, match=r"c\.pt: rating_range .* is not a \(low, high\)"):
            Checkpoint.load(tmp_path / "c.pt")


def _read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_every_output_path_clips_to_the_recorded_scale(trained_run, tmp_path):
    """A checkpoint whose labels were on a narrow scale: torch, ONNX and the CLI all keep every
    rating inside it, and values at the bounds are the clipped ones."""
    state = Checkpoint.load(trained_run.checkpoint)
    free = list(Model.from_checkpoint(state).rows(trained_run.wavs[:16]))
    values = sorted(r[a] for r in free for a in AVD)
    lo, hi = values[len(values) // 4], values[3 * len(values) // 4]  # a quarter out each side
    state = replace(state, rating_range=(lo, hi))
    narrow = tmp_path / "narrow.pt"
    state.save(narrow)
    onnx_file = tmp_path / "narrow.onnx"
    assert export_main([str(narrow), "--out", str(onnx_file)]) == 0

    for model in (Model.from_checkpoint(state), Model.from_onnx(onnx_file)):
        rows = list(model.rows(trained_run.wavs[:16]))
        for row, unclipped in zip(rows, free, strict=True):
            for a in AVD:
                assert row[a] == pytest.approx(min(max(unclipped[a], lo), hi), abs=1e-4)
        clipped = [r[a] for r in rows for a in AVD]
        assert min(clipped) == pytest.approx(lo) and max(clipped) == pytest.approx(hi)

    for backend, model in (("torch", narrow), ("onnx", onnx_file)):
        out = tmp_path / f"{backend}.csv"
        argv = ["--model", str(model), "--backend", backend, *map(str, trained_run.wavs[:16])]
        assert predict.main([*argv, "--out", str(out)]) == 0
        numbers = [float(r[a]) for r in _read(out) for a in AVD]
        assert lo - 1e-4 <= min(numbers) and max(numbers) <= hi + 1e-4


@pytest.mark.slow
def test_cli_onnx_backend_gives_the_torch_rows(trained_run, trained_onnx, tmp_path, caplog):
    folder = tmp_path / "audio"
    folder.mkdir()
    for wav in trained_run.wavs[:5]:
        (folder / wav.name).write_bytes(wav.read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    torch_csv, onnx_csv = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert (
        predict.main(["--model", str(trained_run.checkpoint), str(folder), "--out", str(torch_csv)])
        == 0
    )
    argv = ["--model", str(trained_onnx), "--backend", "onnx", str(folder), "--out", str(onnx_csv)]
    assert predict.main([*argv, "--batch-files", "2"]) == 0
    expected, got = _read(torch_csv), _read(onnx_csv)
    assert [r["path"] for r in got] == [r["path"] for r in expected] and len(got) == 6
    for g, e in zip(got, expected, strict=True):
        assert g["error"] == e["error"] and g["cluster"] == e["cluster"]
        for a in [*AVD, "cluster_distance", "duration_s"]:
            # the CSV holds 4 decimals: equal up to one rounding step
            assert g[a] == e[a] or abs(float(g[a]) - float(e[a])) <= 1.01e-4
    assert [r["error"] for r in got if r["error"]] == ["unreadable"]

    # a checkpoint given to the ONNX backend: one clear message, exit 1
    bad = ["--model", str(trained_run.checkpoint), "--backend", "onnx", str(folder)]
    assert predict.main([*bad, "--out", str(tmp_path / "x.csv")]) == 1
    assert "not a readable ONNX model" in caplog.text


def test_predict_folder_streams_rows_and_reports_bad_files(trained_run, tmp_path):
    state = load_checkpoint(str(trained_run.run_dir / "checkpoint_best.pt"))
    model = Model.from_checkpoint(state)
    corpus = load_corpus(model.cfg)
    rows = corpus.rows("Test1")[:3]
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    expected = {}
    for i, r in enumerate(rows):
        audio, sr = sf.read(corpus.manifest[r].path)
        target = folder / ("sub" if i else "") / f"file{i}.wav"
        if i == 2:  # another format and rate: FLAC, stereo, 8 kHz (half the samples)
            target = target.with_suffix(".flac")
            audio, sr = np.stack([audio[::2], audio[::2]], axis=1), sr // 2
        sf.write(target, audio, sr)
        expected[str(target)] = (r, len(audio) / sr)
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "notes.txt").write_text("not audio: ignored in folders")
    out = tmp_path / "preds.csv"
    argv = ["--model", trained_run.run_id, str(folder), "--out", str(out), "--batch-files", "2"]
    assert predict.main([*argv, "--tracking-uri", trained_run.uri]) == 0

    with out.open() as f:
        got = {row["path"]: row for row in csv.DictReader(f)}
    assert list(got) == sorted(got) and len(got) == 4  # every audio file, none of the others
    broken = got.pop(str(folder / "sub" / "broken.wav"))
    assert broken["error"] == "unreadable" and broken["arousal"] == broken["cluster"] == ""
    reference = model.dataset(corpus.packed, rows[:2])  # the two untouched WAV files
    ratings, (clusters, _) = model.ratings(reference), model.clusters(reference)
    for path, (row, seconds) in expected.items():
        out_row = got[path]
        assert out_row["error"] == ""
        assert float(out_row["duration_s"]) == pytest.approx(seconds, abs=0.02)
        assert 0 <= int(out_row["cluster"]) < 4 and float(out_row["cluster_distance"]) >= 0
        j = list(rows).index(row)
        if j < 2:  # same audio as in training: same numbers as the training data path
            got_avd = [float(out_row[a]) for a in ("arousal", "valence", "dominance")]
            assert got_avd == pytest.approx(ratings[j].tolist(), abs=1e-3)
            assert int(out_row["cluster"]) == clusters[j]

    assert (
        predict.main(["--model", str(tmp_path / "missing.pt"), str(folder), "--out", str(out)]) == 1
    )


# --- long recordings: a row per segment, a whole-file row, timelines ------------------------------
def _by_file(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["path"], []).append(row)
    return out


def _numbers(rows: list[dict], column: str) -> np.ndarray:
    return np.array([float(r[column]) for r in rows])


@pytest.mark.slow
def test_a_long_recording_gets_a_row_per_segment_and_a_timeline(
    trained_run, long_recordings, tmp_path, assert_png
):
    episode, short, music = long_recordings.episode, trained_run.wavs[0], long_recordings.music
    twin = tmp_path / "other" / episode.name  # the same file name in another folder
    twin.parent.mkdir()
    twin.symlink_to(episode)
    out, pictures = tmp_path / "preds.csv", tmp_path / "timelines"
    argv = ["--model", str(trained_run.checkpoint), *map(str, (episode, short, music, twin))]
    assert predict.main([*argv, "--out", str(out), "--timeline", str(pictures)]) == 0
    rows = _read(out)
    assert list(rows[0]) == output_columns(AVD)
    files = _by_file(rows)
    assert list(files) == [str(episode), str(short), str(music), str(twin)]

    # the episode: its segments in time order, as training's code cuts it, then the whole file
    *parts, whole = files[str(episode)]
    cfg = Checkpoint.load(trained_run.checkpoint).config()
    expected = segment_file(episode, SegmentSettings.from_config(cfg.segment)).segments
    assert len(parts) == len(expected) >= 4
    assert [r["segment"] for r in parts] == [str(i) for i in range(len(parts))]
    assert whole["segment"] == "whole-file" and not any(r["error"] for r in files[str(episode)])
    starts, ends = _numbers(parts, "start_s"), _numbers(parts, "end_s")
    assert np.allclose(np.c_[starts, ends], expected, atol=1e-4)
    assert (np.diff(starts) > 0).all() and (ends[:-1] <= starts[1:] + 1e-6).all()
    assert np.allclose(_numbers(parts, "duration_s"), ends - starts, atol=2e-4)
    assert _numbers(parts, "arousal").std() > 0  # each segment is rated on its own
    # the whole-file row: duration-weighted means; the cluster holding the most segment time
    weights = ends - starts
    for a in AVD:
        assert float(whole[a]) == pytest.approx(
            np.average(_numbers(parts, a), weights=weights), abs=2e-4
        )
    clusters = np.array([int(r["cluster"]) for r in parts])
    time_in = {c: weights[clusters == c].sum() for c in dict.fromkeys(clusters.tolist())}
    winner = max(time_in, key=time_in.get)
    assert int(whole["cluster"]) == winner
    distance = np.average(
        _numbers(parts, "cluster_distance")[clusters == winner], weights=weights[clusters == winner]
    )
    assert float(whole["cluster_distance"]) == pytest.approx(distance, abs=2e-4)
    length = sf.info(episode).duration
    assert (float(whole["start_s"]), float(whole["end_s"])) == (
        0.0,
        pytest.approx(length, abs=1e-3),
    )
    assert float(whole["duration_s"]) == pytest.approx(length, abs=1e-3)
    assert files[str(twin)] == [r | {"path": str(twin)} for r in files[str(episode)]]

    # a segment's row is the rating of its span, as if it were a file of its own
    audio, sr = sf.read(episode, dtype="float32")
    first = tmp_path / "first_segment.wav"
    sf.write(first, audio[round(starts[0] * sr) : round(ends[0] * sr)], sr, subtype="FLOAT")
    (alone,) = Model.from_checkpoint(Checkpoint.load(trained_run.checkpoint)).rows([first])
    assert [alone[a] for a in AVD] == pytest.approx([float(parts[0][a]) for a in AVD], abs=2e-4)
    assert alone["cluster"] == int(parts[0]["cluster"])

    # a short file: one row, as before segmentation; music alone: no speech, no numbers
    (row,) = files[str(short)]
    assert row["segment"] == "whole-file" and row["error"] == "" and float(row["start_s"]) == 0
    assert (
        float(row["end_s"])
        == float(row["duration_s"])
        == pytest.approx(sf.info(short).duration, abs=0.02)
    )
    (row,) = files[str(music)]
    assert (row["segment"], row["error"], row["arousal"], row["cluster"]) == (
        "whole-file",
        "no speech found",
        "",
        "",
    )

    # one timeline per file with ratings, all the same size
    names = {"episode.png", "episode_2.png", f"{short.stem}.png"}
    assert {p.name for p in pictures.iterdir()} == names
    for name in names:
        image = assert_png(pictures / name)
        assert image.shape[1::-1] == figures.TIMELINE_PIXELS

    # --segment never: the episode as one utterance
    assert predict.main([*argv[:3], "--segment", "never", "--out", str(out)]) == 0
    (row,) = _read(out)
    assert (row["segment"], row["error"]) == ("whole-file", "")
    assert float(row["duration_s"]) == pytest.approx(length, abs=0.02)


@pytest.mark.slow
def test_onnx_backend_gives_the_torch_segment_rows(trained_run, trained_onnx, long_recordings):
    paths = [long_recordings.episode, long_recordings.music]
    expected = list(Model.from_checkpoint(Checkpoint.load(trained_run.checkpoint)).rows(paths))
    got = list(Model.from_onnx(trained_onnx).rows(paths, batch_files=3))
    assert len(got) == len(expected) > 3
    for g, e in zip(got, expected, strict=True):
        keys = ("path", "segment", "start_s", "end_s", "cluster", "error")
        assert [g[k] for k in keys] == [e[k] for k in keys]
        if not e["error"]:
            assert [g[a] for a in AVD] == pytest.approx([e[a] for a in AVD], abs=1e-4)
