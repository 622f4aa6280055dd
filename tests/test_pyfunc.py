"""The pyfunc model a finished tiny training run logged: loaded back from MLflow, it predicts what
the checkpoint predicts and reports missing files."""

from __future__ import annotations

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest

from deepemocluster import predict
from deepemocluster.predict import Predictor, load_state

pytestmark = pytest.mark.slow


def test_pyfunc_model_round_trip(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.uri)  # restored after the test
    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    wavs = sorted((trained_run.corpus_root / "Audios").glob("*.wav"))[:3]
    frame = pd.DataFrame({"path": [str(p) for p in wavs] + [str(tmp_path / "gone.wav")]})
    out = model.predict(frame)
    assert list(out.columns) == predict.output_columns(["arousal", "valence", "dominance"])
    assert out["path"].tolist() == frame["path"].tolist()
    assert out["error"].tolist() == ["", "", "", "not_a_file"]
    assert out["cluster"].isna().tolist() == [False, False, False, True]
    state = load_state(str(trained_run.run_dir / "checkpoint_best.pt"))
    direct = list(Predictor.from_checkpoint(state).predict(wavs))
    assert out["arousal"][:3].tolist() == pytest.approx([r["arousal"] for r in direct])
    assert out["cluster"][:3].tolist() == [r["cluster"] for r in direct]
