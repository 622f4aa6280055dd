"""What the Python API reads: audio files, folders of them, and numpy arrays at a sample rate.

An array is written losslessly (32-bit float WAV) to a temporary file for the length of the call,
so that decoding, resampling, segmentation and features are the very code that files go through:
an array gives exactly the rows of the same samples in a file, and there is no second feature
path to keep in step. Its rows name it ``<array i>``, ``i`` its position among the inputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from deepemocluster.data.audio import AUDIO_SUFFIXES
from deepemocluster.errors import DeepEmoClusterError

AudioInput = str | os.PathLike | np.ndarray


class InputError(DeepEmoClusterError, ValueError):
    """An input that is no audio at all (not a path or an array, an array of the wrong shape or
    type, an array without a sample rate); the message names it by its position."""


def audio_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given (any suffix: a wrong one is reported per file), folders recursively
    (audio suffixes only, sorted), lazily so a huge tree starts producing rows at once."""
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(AUDIO_SUFFIXES):
                    yield Path(folder) / name


@contextmanager
def as_paths(
    inputs: AudioInput | Iterable[AudioInput], sample_rate: int | None
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The inputs as paths (arrays written to temporary files, removed on exit), and the name
    each temporary file's rows carry."""
    items = _items(inputs)
    arrays = {i: _samples(x, i) for i, x in enumerate(items) if not _is_path(x)}
    if not arrays:
        if sample_rate is not None:
            raise InputError("sample_rate is for arrays: a file carries its own")
        yield [os.fspath(x) for x in items], {}
        return
    rate = _rate(sample_rate)
    with tempfile.TemporaryDirectory(prefix="deepemocluster-") as folder:
        paths, names = [], {}
        for i, x in enumerate(items):
            if i not in arrays:
                paths.append(os.fspath(x))
                continue
            path = str(Path(folder) / f"array_{i}.wav")
            sf.write(path, arrays[i], rate, subtype="FLOAT")
            paths.append(path)
            names[path] = f"<array {i}>"
        yield paths, names


def _items(inputs: AudioInput | Iterable[AudioInput]) -> Sequence[AudioInput]:
    if _is_path(inputs) or _is_array(inputs):
        return [inputs]
    if not isinstance(inputs, Iterable):
        raise InputError(f"inputs: a {type(inputs).__name__}; expected paths or arrays")
    items = list(inputs)
    for i, x in enumerate(items):
        if not (_is_path(x) or _is_array(x)):
            raise InputError(
                f"input {i}: a {type(x).__name__}; expected a file path or a numpy array"
            )
    return items


def _is_path(x: object) -> bool:
    return isinstance(x, str | os.PathLike)


def _is_array(x: object) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__array__")


def _samples(x: object, i: int) -> np.ndarray:
    """(samples,) or (samples, channels) float32, as soundfile reads and writes audio."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise InputError(f"input {i}: an array of {a.dtype}; audio samples are real numbers")
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] > a.shape[0]):
        hint = " (channels first? pass its transpose, .T)" if a.ndim == 2 else ""
        raise InputError(
            f"input {i}: an array of shape {a.shape}; expected (samples,) or "
            f"(samples, channels){hint}"
        )
    return a.astype(np.float32)


def _rate(sample_rate: int | None) -> int:
    if sample_rate is None:
        raise InputError("arrays need their sample_rate (Hz)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise InputError(f"sample_rate: {sample_rate!r}; expected a whole number of Hz")
    if sample_rate <= 0:
        raise InputError(f"sample_rate: {sample_rate}; expected a positive number of Hz")
    return int(sample_rate)
