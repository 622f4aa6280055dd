"""Checkpoints never unpickle arbitrary objects: one that carries a pickled object is refused by
``python -m deepemocluster.evaluate FILE`` with one clear message (exit 1), and its payload never
runs. (Label paths that leave the corpus folder: tests/data/test_manifest_bad_labels.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("stray_signals_fail_the_test")


class CustomState:
    """A custom class instance, as a careless ``torch.save(model_object)`` would store."""

    def __init__(self) -> None:
        self.weights = torch.zeros(3)


class Payload:
    """Unpickling this object would create a file: proof that code ran at load time."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["custom_class", "code_on_load"])
def test_checkpoint_with_a_pickled_object_is_refused(kind, tmp_path, main_in_process):
    marker = tmp_path / "payload-ran"
    obj = CustomState() if kind == "custom_class" else Payload(marker)
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"epoch": 3, "model": obj, "config_yaml": "train: {}"}, path)
    out = main_in_process("evaluate", [str(path), "--split", "Test1"])
    assert out.code == 1
    assert f"{path}: refused, it holds objects other than tensors and plain data" in out.errors
    assert "\n" not in out.errors.strip()  # one line, not a traceback
    assert not marker.exists()
