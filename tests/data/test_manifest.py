"""Corpus readers: MSP-Podcast layout, generic CSV, unlabelled folders/lists, and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepemocluster.data.manifest import (
    MSP_COLUMNS,
    UNLABELLED_SPLIT,
    check_audio_exists,
    combine,
    read_csv_manifest,
    read_msp_podcast,
    read_unlabelled,
)
from deepemocluster.errors import ManifestError

GENERIC_HEADER = ("id", "path", "split", "arousal", "valence", "dominance", "emo_class", "speaker")


def labels_of(root: Path) -> Path:
    return root / "Labels" / "labels_consensus.csv"


def where(path: Path, line: int) -> str:
    """The ``file:line`` prefix every row error starts with."""
    return re.escape(f"{path}:{line}:")


# --- MSP-Podcast layout -------------------------------------------------------------------------


def test_msp_podcast_reader_builds_one_record_per_row(make_msp_corpus, msp_rows):
    root = make_msp_corpus(audio=False)
    manifest = read_msp_podcast(root)
    rows = msp_rows()
    assert [u.id for u in manifest] == [f"utt{i:03d}" for i in range(len(rows))]
    first = manifest[0]
    assert Path(first.path) == (root / "Audios" / "utt000.wav").resolve()
    assert (first.split, first.emo_class, first.speaker, first.gender) == (
        "Train",
        "N",
        "spk0",
        "Male",
    )
    assert (first.arousal, first.valence, first.dominance) == (1.0, 1.0, 1.0)
    assert manifest[1].arousal == pytest.approx(1.7)
    assert manifest[1].valence == pytest.approx(2.3)
    assert manifest[1].dominance == pytest.approx(3.1)
    assert [u.split for u in manifest].count("Train") == 6
    assert {u.split for u in manifest} == {"Train", "Development", "Test1"}
    assert all(u.labelled for u in manifest)


def test_msp_podcast_reader_needs_the_layout(tmp_path):
    with pytest.raises(ManifestError, match="labels_consensus.csv"):
        read_msp_podcast(tmp_path)


def test_rows_without_ratings_are_unlabelled_not_errors(make_msp_corpus, msp_rows):
    rows = msp_rows(2, 0, 0) + [["utt_x.wav", "", "", "", "", "spk9", "Female", "Train"]]
    manifest = read_msp_podcast(make_msp_corpus(rows=rows, audio=False))
    last = manifest[-1]
    assert not last.labelled
    assert (last.arousal, last.valence, last.dominance, last.emo_class) == (None, None, None, None)
    assert last.speaker == "spk9"
    assert [u.labelled for u in manifest] == [True, True, False]


def test_bom_and_crlf_label_file_parses(make_msp_corpus, msp_rows):
    root = make_msp_corpus(audio=False, bom=True, crlf=True)
    assert labels_of(root).read_bytes().startswith(b"\xef\xbb\xbfFileName")
    assert b"\r\n" in labels_of(root).read_bytes()
    manifest = read_msp_podcast(root)
    assert len(manifest) == len(msp_rows())
    assert manifest[0].id == "utt000"  # the BOM did not end up in the first column name
    assert manifest[-1].split == "Test1"  # no stray "\r" on the last column
    assert manifest[-1].gender in {"Male", "Female"}


def test_extra_columns_are_ignored(make_msp_corpus, msp_rows):
    header = (*MSP_COLUMNS, "EmoAct_std", "Comment")
    rows = [[*r, "0.5", "fine, really"] for r in msp_rows(2, 1, 1)]
    manifest = read_msp_podcast(make_msp_corpus(rows=rows, header=header, audio=False))
    assert [u.id for u in manifest] == ["utt000", "utt001", "utt002", "utt003"]
    assert manifest[1].arousal == pytest.approx(1.7)


def test_missing_columns_are_named(make_msp_corpus, msp_rows):
    header = [c for c in MSP_COLUMNS if c not in ("EmoVal", "Split_Set")]
    rows = [[v for c, v in zip(MSP_COLUMNS, r, strict=True) if c in header] for r in msp_rows()]
    root = make_msp_corpus(rows=rows, header=header, audio=False)
    with pytest.raises(ManifestError, match=where(labels_of(root), 1)) as err:
        read_msp_podcast(root)
    assert "Split_Set" in str(err.value)
    assert "EmoVal" in str(err.value)


def _with_row(msp_rows, bad: list[object], at: int = 2) -> list[list[object]]:
    """Valid rows with ``bad`` inserted as data row ``at`` (file line ``at + 2``)."""
    rows = msp_rows(4, 1, 1)
    rows.insert(at, bad)
    return rows


@pytest.mark.parametrize(
    "bad, message",
    [
        (["b.wav", "N", "high", "3", "3", "s", "Male", "Train"], r"EmoAct.*'high' is not a number"),
        (["b.wav", "N", "4", "0", "3", "s", "Male", "Train"], r"EmoVal.*outside 1.7"),
        (["b.wav", "N", "4", "3", "8", "s", "Male", "Train"], r"EmoDom.*outside 1.7"),
        (["b.wav", "N", "nan", "3", "3", "s", "Male", "Train"], r"EmoAct"),
        (["b.wav", "N", "4", "", "3", "s", "Male", "Train"], r"all given or all empty"),
        (
            ["b.wav", "N", "4", "3", "3", "s", "Male", "Validation"],
            r"unknown Split_Set 'Validation'",
        ),
        (["b.wav", "N", "4", "3", "3", "s", "Male", ""], r"unknown Split_Set ''"),
        (["b.wav", "Z", "4", "3", "3", "s", "Male", "Train"], r"unknown EmoClass 'Z'"),
        (["", "N", "4", "3", "3", "s", "Male", "Train"], r"empty FileName"),
        (["../x.wav", "N", "4", "3", "3", "s", "Male", "Train"], r"leaves the corpus folder"),
        (["sub/../../x.wav", "N", "4", "3", "3", "s", "Male", "Train"], r"leaves the corpus"),
        (["/etc/x.wav", "N", "4", "3", "3", "s", "Male", "Train"], r"absolute path"),
        (
            ["utt001.wav", "N", "4", "3", "3", "s", "Male", "Train"],
            r"duplicate id 'utt001'.*line 3",
        ),
    ],
)
def test_row_errors_name_file_and_line(make_msp_corpus, msp_rows, bad, message):
    root = make_msp_corpus(rows=_with_row(msp_rows, bad), audio=False)
    with pytest.raises(ManifestError, match=where(labels_of(root), 4)) as err:
        read_msp_podcast(root)
    assert re.search(message, str(err.value)), str(err.value)


def test_test_splits_with_any_number_are_accepted(make_msp_corpus, msp_rows):
    rows = msp_rows(1, 0, 0) + [
        ["t2.wav", "N", "4", "4", "4", "s", "Male", "Test2"],
        ["t3.wav", "N", "4", "4", "4", "s", "Male", "Test"],
    ]
    manifest = read_msp_podcast(make_msp_corpus(rows=rows, audio=False))
    assert [u.split for u in manifest] == ["Train", "Test2", "Test"]


def test_ratings_at_the_scale_ends_are_valid(make_msp_corpus):
    rows = [["e.wav", "N", "1", "7", "1.0", "s", "Male", "Train"]]
    (utt,) = read_msp_podcast(make_msp_corpus(rows=rows, audio=False))
    assert (utt.arousal, utt.valence, utt.dominance) == (1.0, 7.0, 1.0)


def test_paths_outside_the_corpus_are_allowed_only_when_asked(make_msp_corpus, tmp_path):
    outside = tmp_path / "elsewhere" / "abs.wav"
    rows = [
        ["../x.wav", "N", "4", "4", "4", "s", "Male", "Train"],
        [str(outside), "N", "4", "4", "4", "s", "Male", "Train"],
        ["sub/y.wav", "N", "4", "4", "4", "s", "Male", "Train"],
    ]
    root = make_msp_corpus(rows=rows, audio=False)
    with pytest.raises(ManifestError, match=where(labels_of(root), 2)):
        read_msp_podcast(root)
    manifest = read_msp_podcast(root, allow_absolute_paths=True)
    assert [Path(u.path) for u in manifest] == [
        (root / "x.wav").resolve(),
        outside,
        (root / "Audios" / "sub" / "y.wav").resolve(),
    ]
    assert [u.id for u in manifest] == ["x", "abs", "y"]


def test_check_audio_exists_lists_missing_files(make_msp_corpus, msp_rows):
    root = make_msp_corpus(rows=msp_rows(3, 0, 0))
    check_audio_exists(read_msp_podcast(root))  # all present: no error
    (root / "Audios" / "utt001.wav").unlink()
    (root / "Audios" / "utt002.wav").unlink()
    with pytest.raises(ManifestError) as err:
        check_audio_exists(read_msp_podcast(root))
    text = str(err.value)
    assert text.startswith("2 audio file(s)")
    assert "utt001.wav" in text and "utt002.wav" in text and "utt000.wav" not in text


# --- generic CSV ---------------------------------------------------------------------------------


def test_generic_csv_reader(tmp_path, write_csv):
    csv_path = write_csv(
        tmp_path / "lists" / "manifest.csv",
        (*GENERIC_HEADER, "gender", "notes"),
        [
            ["a1", "wav/a.wav", "Train", "2.5", "3", "4", "H", "s1", "F", "x"],
            ["", "wav/deep/b.flac", "Development", "", "", "", "", "", "", ""],
            ["c1", "c.wav", "Test1", "7", "1", "1", "whatever", "s2", "M", ""],
        ],
    )
    manifest = read_csv_manifest(csv_path)
    assert [u.id for u in manifest] == ["a1", "b", "c1"]  # empty id → file stem
    assert Path(manifest[0].path) == (tmp_path / "lists" / "wav" / "a.wav").resolve()
    assert (manifest[0].arousal, manifest[0].valence, manifest[0].dominance) == (2.5, 3.0, 4.0)
    assert (manifest[0].emo_class, manifest[0].speaker, manifest[0].gender) == ("H", "s1", "F")
    assert not manifest[1].labelled and manifest[1].split == "Development"
    assert manifest[2].emo_class == "whatever"  # free-form classes in the generic format


def test_generic_csv_with_only_path_and_split(tmp_path, write_csv):
    csv_path = write_csv(tmp_path / "m.csv", ("path", "split"), [["a.wav", "Train"]])
    (utt,) = read_csv_manifest(csv_path)
    assert (utt.id, utt.split, utt.labelled) == ("a", "Train", False)


def test_generic_csv_errors_name_file_and_line(tmp_path, write_csv):
    missing = write_csv(tmp_path / "m1.csv", ("id", "file", "split"), [["a", "a.wav", "Train"]])
    with pytest.raises(ManifestError, match=where(missing, 1) + ".*path"):
        read_csv_manifest(missing)
    dup = write_csv(
        tmp_path / "m2.csv",
        ("id", "path", "split"),
        [["a", "a.wav", "Train"], ["b", "b.wav", "Train"], ["a", "c.wav", "Test1"]],
    )
    with pytest.raises(ManifestError, match=where(dup, 4) + ".*duplicate id 'a'.*line 2"):
        read_csv_manifest(dup)
    rng = write_csv(
        tmp_path / "m3.csv",
        ("path", "split", "arousal", "valence", "dominance"),
        [["a.wav", "Train", "4", "4", "4"], ["b.wav", "Train", "0", "4", "4"]],
    )
    with pytest.raises(ManifestError, match=where(rng, 3) + ".*arousal"):
        read_csv_manifest(rng)
    with pytest.raises(ManifestError, match="manifest file not found"):
        read_csv_manifest(tmp_path / "nope.csv")


def test_generic_csv_refuses_absolute_paths_by_default(tmp_path, write_csv):
    csv_path = write_csv(tmp_path / "m.csv", ("path", "split"), [["/data/a.wav", "Train"]])
    with pytest.raises(ManifestError, match=where(csv_path, 2) + ".*absolute path"):
        read_csv_manifest(csv_path)
    (utt,) = read_csv_manifest(csv_path, allow_absolute_paths=True)
    assert utt.path == "/data/a.wav"


# --- unlabelled sources and combine ----------------------------------------------------------------


def test_unlabelled_folder_is_read_recursively_audio_only(tmp_path, write_audio):
    folder = tmp_path / "podcasts"
    for name in ("a.wav", "sub/b.flac", "sub/deeper/c.ogg", "d.mp3", "E.WAV"):
        write_audio(folder / name, 0.1)
    (folder / "notes.txt").write_text("not audio")
    (folder / "sub" / "features.npy").write_bytes(b"\x93NUMPY")
    (folder / "folder.wav").mkdir()  # a directory with an audio suffix is not a file
    manifest = read_unlabelled([folder])
    assert sorted(u.id for u in manifest) == [
        "podcasts/E",
        "podcasts/a",
        "podcasts/d",
        "podcasts/sub/b",
        "podcasts/sub/deeper/c",
    ]
    assert all(u.split == UNLABELLED_SPLIT and not u.labelled for u in manifest)
    assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in manifest)


def test_unlabelled_list_file(tmp_path, write_audio):
    a = write_audio(tmp_path / "audio" / "a.wav", 0.1)
    b = write_audio(tmp_path / "audio" / "b.flac", 0.1)
    listing = tmp_path / "lists" / "extra.txt"
    listing.parent.mkdir()
    listing.write_text(f"# comment\n../audio/a.wav\n\n  {b}  \r\n", encoding="utf-8-sig")
    manifest = read_unlabelled([listing])
    assert [Path(u.path) for u in manifest] == [a.resolve(), b.resolve()]
    assert len({u.id for u in manifest}) == 2
    assert all(u.id.startswith("extra.txt/") for u in manifest)


def test_unlabelled_source_must_exist(tmp_path):
    with pytest.raises(ManifestError, match="nowhere"):
        read_unlabelled([tmp_path / "nowhere"])


def test_combine_labelled_corpus_and_two_unlabelled_folders(
    make_msp_corpus, tmp_path, write_audio, msp_rows
):
    root = make_msp_corpus(rows=msp_rows(2, 1, 1))
    for name in ("x.wav", "y.wav"):
        write_audio(tmp_path / "one" / "podcasts" / name, 0.1)
    write_audio(tmp_path / "two" / "radio" / "x.wav", 0.1)
    manifest = combine(
        read_msp_podcast(root),
        read_unlabelled([tmp_path / "one" / "podcasts", tmp_path / "two" / "radio"]),
    )
    assert [u.id for u in manifest] == [
        "utt000",
        "utt001",
        "utt002",
        "utt003",
        "podcasts/x",
        "podcasts/y",
        "radio/x",
    ]
    assert [u.labelled for u in manifest] == [True] * 4 + [False] * 3
    check_audio_exists(manifest)


def test_combine_refuses_duplicate_ids_across_sources(tmp_path, write_audio):
    first = write_audio(tmp_path / "a" / "unlab" / "x.wav", 0.1)
    second = write_audio(tmp_path / "b" / "unlab" / "x.wav", 0.1)
    one, two = read_unlabelled([first.parent]), read_unlabelled([second.parent])
    with pytest.raises(ManifestError, match="duplicate utterance id 'unlab/x'") as err:
        combine(one, two)
    assert str(first) in str(err.value) and str(second) in str(err.value)
    # the same folder listed twice is the same mistake
    with pytest.raises(ManifestError, match="duplicate"):
        combine(read_unlabelled([first.parent, first.parent]))
