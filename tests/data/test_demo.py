"""The built-in demo corpus: layout, determinism, safe regeneration, and that its labels are learnable."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from deepemocluster.config import load_config
from deepemocluster.config.schema import DemoConfig
from deepemocluster.data import demo
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.demo import generate_demo_corpus, plan_corpus, speakers_per_part
from deepemocluster.data.demo_episodes import TURN_GAP_S, UTTERANCE_GAP_S
from deepemocluster.data.manifest import read_msp_podcast, read_unlabelled
from deepemocluster.errors import ConfigError
from tests.support.bench import load_benchmark

SMALL = DemoConfig(seed=0, n_train=40, n_dev=12, n_test=16, n_unlabelled=20, n_speakers=10)
TINY = DemoConfig(seed=0, n_train=4, n_dev=2, n_test=2, n_unlabelled=2, n_speakers=4)
HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"


# benchmarks/pooled_ridge.py is the one home of the pooled-statistics ridge baseline
pooled_ridge = load_benchmark("pooled_ridge")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", SMALL)


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "Labels" / "labels_consensus.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _wavs(root: Path) -> list[Path]:
    return sorted((root / "Audios").glob("*.wav")) + sorted((root / "Unlabelled").glob("*.wav"))


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# --- layout and labels -----------------------------------------------------------------------


def test_layout_header_and_splits(small: Path) -> None:
    assert (small / "Labels" / "labels_consensus.csv").read_text().splitlines()[0] == HEADER
    rows = _rows(small)
    assert Counter(r["Split_Set"] for r in rows) == {"Train": 40, "Development": 12, "Test1": 16}
    assert {p.name for p in (small / "Audios").iterdir()} == {r["FileName"] for r in rows}
    unlabelled = {p.name for p in (small / "Unlabelled").iterdir()}
    assert len(unlabelled) == 20 and not unlabelled & {r["FileName"] for r in rows}
    for r in rows:
        assert r["FileName"].endswith(".wav")
        assert r["EmoClass"] in set("ASHUFDCN")
        assert r["Gender"] in ("Male", "Female")
        assert int(r["SpkrID"]) >= 1
        for column in ("EmoAct", "EmoVal", "EmoDom"):
            assert 1.0 <= float(r[column]) <= 7.0
            assert len(r[column].split(".")[1]) <= 4


def test_speakers_are_disjoint_between_all_parts(small: Path) -> None:
    speakers: dict[str, set[int]] = {}
    for u in plan_corpus(SMALL):
        speakers.setdefault(u.split or "unlabelled", set()).add(u.speaker.spk_id)
    assert set(speakers) == {"Train", "Development", "Test1", "unlabelled"}
    parts = list(speakers.values())
    assert sum(map(len, parts)) == len(set().union(*parts)) == SMALL.n_speakers
    by_split: dict[str, set[str]] = {}
    for r in _rows(small):
        by_split.setdefault(r["Split_Set"], set()).add(r["SpkrID"])
    assert {k: {int(s) for s in v} for k, v in by_split.items()} == {
        k: v for k, v in speakers.items() if k != "unlabelled"
    }


def test_speakers_per_part_is_proportional_with_one_each() -> None:
    alloc = speakers_per_part([400, 120, 160, 400], 40)
    assert sum(alloc) == 40 and min(alloc) >= 1 and alloc[0] > alloc[1]
    assert speakers_per_part([100, 1, 1, 0], 3) == [1, 1, 1, 0]
    assert speakers_per_part([5, 0, 5, 0], 2) == [1, 0, 1, 0]
    with pytest.raises(ConfigError, match="n_speakers"):
        speakers_per_part([5, 5, 5, 5], 3)


def test_labels_are_neutral_heavy_and_follow_class_centroids() -> None:
    plan = [u for u in plan_corpus(DemoConfig()) if u.split]
    counts = Counter(u.emo_class for u in plan)
    assert counts.most_common(1)[0][0] == "N" and counts["N"] > 0.25 * len(plan)

    def mean(code: str, k: int) -> float:
        return float(np.mean([u.avd[k] for u in plan if u.emo_class == code]))

    assert mean("A", 0) > mean("N", 0) > mean("S", 0)  # arousal
    assert mean("H", 1) > mean("N", 1) > mean("A", 1)  # valence
    assert mean("A", 2) > mean("F", 2)  # dominance


def test_manifest_reader_accepts_the_corpus(small: Path) -> None:
    manifest = read_msp_podcast(small)
    assert len(manifest) == 68 and all(u.labelled for u in manifest)
    assert all(Path(u.path).is_file() for u in manifest)


# --- long episodes ---------------------------------------------------------------------------

EPISODES = replace(TINY, n_unlabelled=4, n_episodes=2, episode_seconds=45.0)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    return generate_demo_corpus(tmp_path_factory.mktemp("demo") / "episodes", EPISODES)


def _turn_rows(root: Path) -> list[dict[str, str]]:
    with (root / "Labels" / "episode_turns.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_episodes_are_long_unlabelled_files_with_their_speech_listed(episodes: Path) -> None:
    files = sorted((episodes / "Unlabelled" / "episodes").glob("*.wav"))
    assert [p.name for p in files] == ["EPISODE_01.wav", "EPISODE_02.wav"]
    rows = _turn_rows(episodes)
    unlabelled_speakers = {u.speaker.spk_id for u in plan_corpus(EPISODES) if u.split is None}
    assert {int(r["speaker"]) for r in rows} <= unlabelled_speakers
    for path in files:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 30.0 - 0.01 <= info.duration <= 60.0 + 0.01  # episode_seconds × [2/3, 4/3]
        mine = [r for r in rows if r["episode"] == f"episodes/{path.stem}"]
        assert len({r["turn"] for r in mine}) >= 2
        audio, _ = sf.read(path)
        spans = [(float(r["start_s"]), float(r["end_s"]), int(r["turn"])) for r in mine]
        assert spans[0][0] > 0 and spans[-1][1] < info.duration
        for (_, end, turn), (start, _, next_turn) in zip(spans, spans[1:], strict=False):
            gap = start - end
            if turn == next_turn:  # shorter than segment.pause_s: one turn for the segmenter
                assert 0 < gap < UTTERANCE_GAP_S[1] + 0.11
            else:
                assert TURN_GAP_S[0] <= gap
        # speech is louder than the tone bed and noise between turns
        speech = np.concatenate([audio[round(a * 16000) : round(b * 16000)] for a, b, _ in spans])
        between = audio[round((spans[0][0] - 0.9) * 16000) : round((spans[0][0] - 0.2) * 16000)]
        assert np.sqrt(np.mean(speech**2)) > 1.5 * np.sqrt(np.mean(between**2)) > 0


def test_episodes_are_read_as_unlabelled_audio_and_reproducible(episodes, tmp_path) -> None:
    ids = {u.id for u in read_unlabelled([episodes / "Unlabelled"])}
    assert {"Unlabelled/episodes/EPISODE_01", "Unlabelled/episodes/EPISODE_02"} <= ids
    assert len(ids) == EPISODES.n_unlabelled + EPISODES.n_episodes
    again = generate_demo_corpus(tmp_path / "again", EPISODES)
    for name in ("Unlabelled/episodes/EPISODE_02.wav", "Labels/episode_turns.csv"):
        assert (again / name).read_bytes() == (episodes / name).read_bytes()


def test_episodes_need_unlabelled_speakers(tmp_path) -> None:
    with pytest.raises(ConfigError, match="n_episodes"):
        generate_demo_corpus(tmp_path / "bad", replace(EPISODES, n_unlabelled=0))


# --- audio -----------------------------------------------------------------------------------


def test_audio_is_16k_mono_pcm16_finite_and_not_silent(small: Path) -> None:
    for path in _wavs(small):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert SMALL.min_seconds - 0.01 <= info.duration <= SMALL.max_seconds + 0.01
        audio, _ = sf.read(path)
        assert np.isfinite(audio).all()
        assert 0.2 < np.abs(audio).max() <= 0.91
        assert np.sqrt(np.mean(audio**2)) > 0.01


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(small: Path, tmp_path: Path) -> None:
    again = generate_demo_corpus(tmp_path / "again", SMALL)
    for name in ("Labels/labels_consensus.csv", "demo.json"):
        assert (again / name).read_bytes() == (small / name).read_bytes()
    assert [p.name for p in _wavs(again)] == [p.name for p in _wavs(small)]
    for a, b in zip(_wavs(again), _wavs(small), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.slow  # starts two spawned processes (~3 s)
def test_worker_processes_do_not_change_the_files(small: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "_MIN_PARALLEL_SECONDS", 1.0)
    parallel = generate_demo_corpus(tmp_path / "parallel", SMALL, workers=2)
    for a, b in zip(_wavs(parallel), _wavs(small), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_other_seed_gives_other_labels_and_audio(small: Path, tmp_path: Path) -> None:
    other = generate_demo_corpus(tmp_path / "other", replace(SMALL, seed=1))
    assert _rows(other) != _rows(small)
    first_a, _ = sf.read(_wavs(small)[0])
    first_b, _ = sf.read(_wavs(other)[0])
    assert first_a.shape != first_b.shape or not np.allclose(first_a, first_b)
    audio_bytes = {p.read_bytes() for p in _wavs(small)}
    assert not audio_bytes & {p.read_bytes() for p in _wavs(other)}


# --- stamp, idempotency and safe regeneration ------------------------------------------------


def test_second_call_with_same_config_does_not_rewrite(small: Path) -> None:
    before = _mtimes(small)
    assert generate_demo_corpus(small, SMALL) == small
    assert _mtimes(small) == before


def test_stamp_holds_config_and_format_version(small: Path) -> None:
    stamp = demo.read_stamp(small)
    assert stamp["format_version"] == demo.FORMAT_VERSION
    assert DemoConfig(**stamp["config"]) == SMALL


def test_changed_config_regenerates_cleanly(tmp_path: Path) -> None:
    root = generate_demo_corpus(tmp_path / "corpus", replace(TINY, n_train=9))
    generate_demo_corpus(root, replace(TINY, seed=7))
    assert demo.read_stamp(root)["config"]["seed"] == 7
    rows = _rows(root)
    assert Counter(r["Split_Set"] for r in rows)["Train"] == 4
    # nothing stale left behind: exactly the files of the new corpus
    assert {p.name for p in (root / "Audios").iterdir()} == {r["FileName"] for r in rows}
    assert len(list((root / "Unlabelled").iterdir())) == TINY.n_unlabelled
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask  # not owner-only like a mkdtemp folder
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no temp folders left behind


def test_unstamped_folder_is_replaced_only_while_it_holds_no_file(tmp_path: Path) -> None:
    # without a stamp nothing proves a file the generator's: empty layout folders go, a file stays
    root = tmp_path / "corpus"
    (root / "Audios").mkdir(parents=True)
    (root / "Unlabelled").mkdir()
    generate_demo_corpus(root, TINY)
    assert demo.read_stamp(root)["config"] == asdict(TINY)
    other = tmp_path / "other"
    (other / "Audios").mkdir(parents=True)
    (other / "Audios" / "half_written.wav").write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match=r"Audios/half_written\.wav .*no readable demo\.json"):
        generate_demo_corpus(other, TINY)
    assert (other / "Audios" / "half_written.wav").read_bytes() == b"RIFF"


def test_folder_with_foreign_files_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        generate_demo_corpus(tmp_path, TINY)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_stamp_lists_every_file_written_with_its_size(episodes: Path) -> None:
    files = {p.relative_to(episodes).as_posix(): p.stat().st_size for p in episodes.rglob("*")}
    files = {k: v for k, v in files.items() if (episodes / k).is_file() and k != "demo.json"}
    assert demo.read_stamp(episodes)["files"] == files
    assert len(files) == 8 + 4 + 2 + 2  # utterances, episodes, both label CSVs


NEXT = replace(EPISODES, seed=5, n_episodes=0)  # any other config makes the copy below stale


def _copy(corpus: Path, to: Path, old_stamp: bool) -> Path:
    """A copy of ``corpus``, stamped as now or as before the stamp listed its files."""
    root = Path(shutil.copytree(corpus, to))
    if old_stamp:
        stamp = {k: v for k, v in demo.read_stamp(root).items() if k != "files"}
        (root / "demo.json").write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    return root


@pytest.fixture(params=["file list", "old stamp"])
def stale(request, episodes: Path, tmp_path: Path) -> Path:
    return _copy(episodes, tmp_path / "corpus", old_stamp=request.param == "old stamp")


def _assert_refused(root: Path, named: str) -> None:
    """The stale corpus is left exactly as it was, and no temp folder next to it."""
    before, stamp = _mtimes(root), (root / "demo.json").read_bytes()
    with pytest.raises(ConfigError) as refused:
        generate_demo_corpus(root, NEXT)
    assert f"data.root {root}: {named} is not" in str(refused.value)
    assert re.search(
        r"move (it|them) out of data\.root, or point data\.root at", str(refused.value)
    )
    assert _mtimes(root) == before and (root / "demo.json").read_bytes() == stamp
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_clean_stale_corpus_is_replaced(stale: Path) -> None:
    generate_demo_corpus(stale, NEXT)
    assert demo.read_stamp(stale)["config"] == asdict(NEXT)
    assert not (stale / "Unlabelled" / "episodes").exists()
    assert [p.name for p in stale.parent.iterdir()] == [stale.name]


def test_fresh_corpus_is_reused_without_a_write(stale: Path) -> None:
    before = _mtimes(stale)
    assert generate_demo_corpus(stale, EPISODES) == stale
    assert _mtimes(stale) == before


@pytest.mark.parametrize(
    ("added", "named"),
    [
        ("Unlabelled/my_talk.wav", "Unlabelled/my_talk.wav"),
        ("Unlabelled/episodes/show.wav", "Unlabelled/episodes/show.wav"),
        ("Unlabelled/mine/2024/talk.wav", "Unlabelled/mine/"),  # a foreign folder: named once
        ("Labels/notes.csv", "Labels/notes.csv"),
        ("Audios/DEMO_0099_00099.wav", "Audios/DEMO_0099_00099.wav"),  # the generator's pattern
    ],
)
def test_foreign_file_anywhere_in_the_tree_stops_the_replacement(
    stale: Path, added: str, named: str
) -> None:
    (stale / added).parent.mkdir(parents=True, exist_ok=True)
    (stale / added).write_bytes(b"mine")
    _assert_refused(stale, named)
    assert (stale / added).read_bytes() == b"mine"


def test_refusal_names_the_first_foreign_entry_and_counts_them(stale: Path) -> None:
    for name in ("Unlabelled/b.wav", "Audios/z.wav", "Unlabelled/a.wav"):
        (stale / name).write_bytes(b"mine")
    with pytest.raises(ConfigError, match=r": Audios/z\.wav is not .*; 3 such entries in all;"):
        generate_demo_corpus(stale, NEXT)


def test_recorded_file_replaced_by_another_stops_the_replacement(stale: Path) -> None:
    (stale / "Unlabelled" / "episodes" / "EPISODE_02.wav").write_bytes(b"my own recording")
    _assert_refused(stale, "Unlabelled/episodes/EPISODE_02.wav")
    assert (stale / "Unlabelled/episodes/EPISODE_02.wav").read_bytes() == b"my own recording"


def test_old_stamp_whose_settings_do_not_give_its_files_is_not_replaced(episodes, tmp_path) -> None:
    # the file list rebuilt from another seed names other files: none of those on disk is proven
    root = _copy(episodes, tmp_path / "corpus", old_stamp=True)
    stamp = demo.read_stamp(root)
    stamp["config"]["seed"] = 1
    (root / "demo.json").write_text(json.dumps(stamp))
    first = sorted(p.name for p in (root / "Audios").iterdir())[0]
    _assert_refused(root, f"Audios/{first}")


def test_file_added_while_the_new_corpus_renders_stops_the_swap(stale: Path, monkeypatch) -> None:
    write_labels = demo._write_labels

    def labels_then_a_user_file(path: Path, labelled: list) -> None:
        write_labels(path, labelled)
        (stale / "Unlabelled" / "late.wav").write_bytes(b"mine")

    monkeypatch.setattr(demo, "_write_labels", labels_then_a_user_file)
    with pytest.raises(ConfigError, match=r": Unlabelled/late\.wav is not"):
        generate_demo_corpus(stale, NEXT)
    assert (stale / "Unlabelled" / "late.wav").read_bytes() == b"mine"
    assert demo.read_stamp(stale)["config"]["seed"] == 0
    assert [p.name for p in stale.parent.iterdir()] == [stale.name]


def test_failed_generation_keeps_old_corpus_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    root = generate_demo_corpus(tmp_path / "corpus", TINY)
    before = _mtimes(root)

    def fail(*args, **kwargs):
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(demo, "_write_labels", fail)
    with pytest.raises(RuntimeError, match="killed"):
        generate_demo_corpus(root, replace(TINY, seed=3))
    assert _mtimes(root) == before and demo.read_stamp(root)["config"]["seed"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_accepts_the_config_node_and_rejects_bad_sizes(tmp_path: Path) -> None:
    node = OmegaConf.structured(
        DemoConfig(n_train=3, n_dev=1, n_test=1, n_unlabelled=0, n_speakers=3)
    )
    root = generate_demo_corpus(tmp_path / "corpus", node)  # as given by cfg.data.demo
    assert len(_rows(root)) == 5 and not list((root / "Unlabelled").iterdir())
    with pytest.raises(ConfigError, match="n_speakers"):
        generate_demo_corpus(tmp_path / "bad", replace(TINY, n_speakers=2))
    with pytest.raises(ConfigError, match="n_train"):
        generate_demo_corpus(tmp_path / "bad", replace(TINY, n_train=0))


def test_cli_writes_and_reports(tmp_path: Path, capsys) -> None:
    args = ["--out", str(tmp_path / "cli"), "--seed", "2", "--n-train", "4", "--n-dev", "2"]
    args += ["--n-test", "2", "--n-unlabelled", "3", "--n-speakers", "4", "--max-seconds", "2.0"]
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "cli") in out and "8 labelled + 3 unlabelled" in out
    assert demo.read_stamp(tmp_path / "cli")["config"]["max_seconds"] == 2.0


# --- the labels are learnable from the audio -------------------------------------------------


@pytest.mark.slow
def test_ridge_on_pooled_log_mel_learns_the_labels(tmp_path: Path) -> None:
    # the test suite's 32 mels; 120 Train utterances already put arousal near 0.7, valence and
    # dominance above 0.3 (the generator is deterministic: the margins are what they are)
    sizes = {"n_train": 120, "n_dev": 30, "n_test": 60, "n_unlabelled": 0, "n_speakers": 24}
    cfg = load_config(
        overrides=[
            f"data.root={tmp_path / 'medium'}",
            f"features.store={tmp_path / 'features'}",
            "features.n_mels=32",
            *(f"data.demo.{k}={v}" for k, v in sizes.items()),
        ]
    )
    scores = pooled_ridge.ridge_scores(load_corpus(cfg), cfg)
    assert scores["arousal"]["ccc"] >= 0.5, scores
    assert scores["valence"]["ccc"] > 0.1 and scores["dominance"]["ccc"] > 0.1, scores
