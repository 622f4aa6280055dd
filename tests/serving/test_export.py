"""ONNX export: the exported graph predicts what the torch model predicts on real audio files,
carries the feature settings in its metadata, and a broken file is refused with a clear error."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.features import FeatureSettings
from deepemocluster.errors import CheckpointError
from deepemocluster.serving import export
from deepemocluster.serving.api import Model
from deepemocluster.serving.backend import load_checkpoint
from tests.support.fixtures import train_tiny

pytestmark = pytest.mark.slow
PARITY = 1e-4  # absolute, on the 1–7 rating scale
AVD = ["arousal", "valence", "dominance"]


@pytest.fixture(scope="module")
def torch_model(trained_run) -> Model:
    return Model.from_checkpoint(load_checkpoint(str(trained_run.checkpoint)))


def _real_files(trained_run, write_audio, tmp_path) -> list[str]:
    """Demo corpus WAVs, one re-encoded as 8 kHz stereo FLAC, and clips shorter than one chunk
    (padded frames) and than one FFT window (an error row)."""
    wavs = [str(p) for p in trained_run.wavs[:12]]
    audio, sr = sf.read(wavs[0])
    flac = tmp_path / "stereo_8k.flac"
    sf.write(flac, np.stack([audio[::2], audio[::2]], axis=1), sr // 2)
    short = write_audio("short.wav", seconds=0.2, freq=310.0)
    too_short = write_audio("too_short.wav", seconds=0.01)
    return [*wavs, str(flac), str(short), str(too_short)]


def test_onnx_predictions_match_torch_on_real_files(
    trained_run, trained_onnx, torch_model, write_audio, tmp_path
):
    paths = _real_files(trained_run, write_audio, tmp_path)
    onnx_model = Model.from_onnx(trained_onnx)
    for batch_files in (1, 5, 32):  # different dynamic batch sizes through the graph
        expected = list(torch_model.rows(paths, batch_files))
        got = list(onnx_model.rows(paths, batch_files))
        assert [r["error"] for r in got] == [r["error"] for r in expected]
        assert got[-1]["error"] == "too_short" and got[-1]["arousal"] is None
        ok = [(g, e) for g, e in zip(got, expected, strict=True) if not e["error"]]
        assert len(ok) == len(paths) - 1
        diff = max(abs(g[a] - e[a]) for g, e in ok for a in AVD)
        assert diff < PARITY, f"ONNX vs torch: {diff:.2e} on the rating scale"
        assert [g["cluster"] for g, _ in ok] == [e["cluster"] for _, e in ok]
        dist = max(abs(g["cluster_distance"] - e["cluster_distance"]) for g, e in ok)
        assert dist < 1e-4
        assert [g["duration_s"] for g, _ in ok] == [e["duration_s"] for _, e in ok]


def test_metadata_carries_the_feature_and_chunk_settings(trained_onnx, torch_model):
    model = onnx.load(str(trained_onnx))
    meta = {p.key: p.value for p in model.metadata_props}
    cfg = torch_model.cfg

    def entry(name: str):
        return json.loads(meta[export.META_PREFIX + name])

    assert entry("features") == asdict(FeatureSettings.from_config(cfg.features))
    assert entry("features")["n_mels"] == 32  # the tiny config's, not the default 128
    assert entry("chunking") == {"n_chunks": 3, "frames": 62, "clip": 3.0}
    assert entry("attributes") == AVD
    assert entry("rating_range") == [1.0, 7.0]
    assert entry("clusters") == 4
    assert "n_mels: 32" in meta[export.META_PREFIX + "config"]
    # the chunk batch is dynamic, the chunk shape fixed
    session = ort.InferenceSession(str(trained_onnx), providers=["CPUExecutionProvider"])
    features, valid = session.get_inputs()
    assert [features.name, valid.name] == list(export.INPUTS)
    assert isinstance(features.shape[0], str) and features.shape[1:] == [62, 32]
    ratings = session.get_outputs()[0]
    assert ratings.name == export.RATINGS and ratings.shape[1] == 3


def test_graph_clips_and_denormalises_inside(trained_onnx):
    """Raw inputs go in, ratings on the 1–7 scale come out: extreme features saturate the
    normalisation, and every rating stays within the scale."""
    session = ort.InferenceSession(str(trained_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e6):
        x = (rng.standard_normal((6, 62, 32)) * scale).astype(np.float32)
        ratings, clusters, dist = session.run(None, {"features": x, "valid_frames": np.full(6, 62)})
        assert ratings.shape == (2, 3) and clusters.shape == (6,) and dist.shape == (6,)
        assert ((ratings >= 1.0) & (ratings <= 7.0)).all()
        assert ((clusters >= 0) & (clusters < 4)).all() and (dist >= 0).all()


def test_export_by_run_id_and_bad_inputs(trained_run, tmp_path, caplog):
    out = tmp_path / "by_run.onnx"
    assert (
        export.main([trained_run.run_id, "--out", str(out), "--tracking-uri", trained_run.uri]) == 0
    )
    onnx.checker.check_model(str(out))
    assert export.main([str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    assert "checkpoint not found" in caplog.text


def test_corrupt_or_foreign_onnx_files_are_refused_clearly(trained_onnx, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(trained_onnx.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.onnx: not a readable ONNX model"):
        Model.from_onnx(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not protobuf at all")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        Model.from_onnx(garbage)
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        Model.from_onnx(tmp_path / "absent.onnx")
    # a valid ONNX model that is not ours: no metadata to decode audio with
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save_model(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(CheckpointError, match="without deepemocluster metadata"):
        Model.from_onnx(foreign)


def test_a_model_without_clustering_exports_ratings_only(trained_run, tmp_path):
    state = replace(Checkpoint.load(trained_run.checkpoint), clusters=None)
    unclustered = tmp_path / "unclustered.pt"
    state.save(unclustered)
    out = tmp_path / "ratings_only.onnx"
    assert export.main([str(unclustered), "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [export.RATINGS]
    wavs = trained_run.wavs[:4]
    got = list(Model.from_onnx(out).rows(wavs))
    expected = list(Model.from_checkpoint(state).rows(wavs))
    assert all(r["cluster"] is None and r["cluster_distance"] is None for r in got)
    diff = max(abs(g[a] - e[a]) for g, e in zip(got, expected, strict=True) for a in AVD)
    assert diff < PARITY


@pytest.mark.parametrize(
    "variant",
    ["model.statistics=true", "model.pooling=attention", "model.ridge_readout=true"],
    ids=["statistics", "attention", "ridge_readout"],
)
def test_other_regressor_inputs_and_poolings_export_with_parity(variant, tmp_path):
    """The graph runs the model's own utterance path, whatever the regressor reads and however
    it pools."""
    trained = train_tiny(tmp_path, variant, "train.epochs=1")
    torch_model = Model.from_checkpoint(load_checkpoint(str(trained.checkpoint)))
    onnx_path = export.export(torch_model.backend, tmp_path / "model.onnx")
    paths = [str(p) for p in trained.wavs[:6]]
    expected = list(torch_model.rows(paths, 4))
    got = list(Model.from_onnx(onnx_path).rows(paths, 4))
    assert all(not r["error"] for r in expected)
    diff = max(abs(g[a] - e[a]) for g, e in zip(got, expected, strict=True) for a in AVD)
    assert diff < PARITY, f"ONNX vs torch ({variant}): {diff:.2e} on the rating scale"
