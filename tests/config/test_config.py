"""Config strictness: every mistake fails before work starts, with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepemocluster.config import flatten, load_config, to_yaml
from deepemocluster.errors import ConfigError

ROOT = ["data.root=/tmp/corpus"]  # data.root may be mandatory; give it wherever it is not tested


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_overrides_are_applied():
    cfg = load_config(None, [*ROOT, "train.epochs=3", "cluster.k=7", "features.kind=mel"])
    assert cfg.train.epochs == 3
    assert cfg.cluster.k == 7
    assert cfg.features.kind == "mel"
    assert cfg.data.root == "/tmp/corpus"


def test_config_is_read_only():
    cfg = load_config(None, ROOT)
    with pytest.raises(Exception, match="read-only|ReadonlyConfigError"):
        cfg.train.epochs = 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epoch=5", "train.epoch"),  # typo of a leaf
        ("optim.main.lrr=0.1", "optim.main.lrr"),  # nested typo
        ("trian.epochs=5", "trian"),  # typo of a section
    ],
)
def test_unknown_key_override_fails_naming_it(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [*ROOT, override])


def test_unknown_nested_key_in_yaml_fails_naming_it_and_the_file(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", "optim:\n  main:\n    lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ROOT)
    assert "optim.main.lrr" in str(err.value)
    assert "bad.yaml" in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=2.5", "train.epochs"),
        ("data.label_fraction=lots", "data.label_fraction"),
        ("cluster.l2_normalize=maybe", "cluster.l2_normalize"),
        ("model.channels=5", "model.channels"),
    ],
)
def test_wrong_type_fails_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [*ROOT, override])


def test_wrong_type_in_yaml_fails_naming_the_key(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "train:\n  batch_utterances: many\n")
    with pytest.raises(ConfigError, match=r"train\.batch_utterances"):
        load_config(path, ROOT)


@pytest.mark.parametrize(
    "override, key",
    [
        ("features.kind=mfcc", "features.kind"),
        ("data.format=wav2vec", "data.format"),
        ("cluster.mode=three_stage", "cluster.mode"),
        ("optim.main.name=none", "optim.main.name"),
        ("train.device=tpu", "train.device"),
    ],
)
def test_value_outside_its_choices_fails_naming_key_and_choices(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [*ROOT, override])
    assert key in str(err.value)
    assert override.split("=")[1] in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=-1", "train.epochs"),
        ("features.hop_length=0", "features.hop_length"),
        ("features.n_mels=-64", "features.n_mels"),
        ("chunking.frames=0", "chunking.frames"),
        ("chunking.n_chunks=-3", "chunking.n_chunks"),
        ("cluster.k=0", "cluster.k"),
        ("cluster.k=1", "cluster.k"),  # positive but still not a clustering
        ("data.label_fraction=0", "data.label_fraction"),
        ("data.label_fraction=1.5", "data.label_fraction"),
        ("data.max_skip_ratio=-0.1", "data.max_skip_ratio"),
    ],
)
def test_out_of_range_values_fail_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [*ROOT, override])


def test_mandatory_value_in_yaml_must_be_given(tmp_path):
    path = write_yaml(tmp_path / "needs_root.yaml", "data:\n  format: msp_podcast\n  root: ???\n")
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_config(path)
    cfg = load_config(path, ["data.root=/data/msp"])
    assert cfg.data.root == "/data/msp"


def test_mandatory_value_in_yaml_for_a_non_path_key(tmp_path):
    path = write_yaml(tmp_path / "needs_k.yaml", "cluster:\n  k: ???\n")
    with pytest.raises(ConfigError, match=r"cluster\.k"):
        load_config(path, ROOT)
    assert load_config(path, [*ROOT, "cluster.k=12"]).cluster.k == 12


def test_override_without_equals_sign_fails_naming_it():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(None, [*ROOT, "train.epochs"])


def test_missing_config_file_fails(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml", ROOT)


def test_csv_format_needs_a_manifest():
    with pytest.raises(ConfigError, match=r"data\.manifest"):
        load_config(None, [*ROOT, "data.format=csv"])


def test_yaml_relative_paths_are_anchored_to_the_yaml_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    folder = tmp_path / "configs"
    path = write_yaml(
        folder / "exp.yaml",
        "data:\n"
        "  format: csv\n"
        "  root: ../corpus\n"
        "  manifest: lists/manifest.csv\n"
        "  unlabelled: [../extra/podcasts, /abs/unlab]\n"
        "features:\n"
        "  store: ../runs/features\n"
        "tracking:\n"
        "  runs_dir: out\n",
    )
    cfg = load_config(path)
    assert Path(cfg.data.root) == (tmp_path / "corpus").resolve()
    assert Path(cfg.data.manifest) == (folder / "lists" / "manifest.csv").resolve()
    assert [Path(p) for p in cfg.data.unlabelled] == [
        (tmp_path / "extra" / "podcasts").resolve(),
        Path("/abs/unlab"),
    ]
    assert Path(cfg.features.store) == (tmp_path / "runs" / "features").resolve()
    assert Path(cfg.tracking.runs_dir) == (folder / "out").resolve()


def test_to_yaml_round_trips_through_a_file(tmp_path):
    first = write_yaml(
        tmp_path / "a" / "exp.yaml",
        "data:\n  root: corpus\nfeatures:\n  store: feats\n  kind: mel\ncluster:\n  k: 9\n",
    )
    cfg = load_config(first, ["train.epochs=4", "model.channels=[8,8]", "model.strides=[1,2]"])
    dumped = write_yaml(tmp_path / "b" / "deeper" / "resolved.yaml", to_yaml(cfg))
    again = load_config(dumped)
    assert flatten(again) == flatten(cfg)
    assert flatten(again)["cluster.k"] == 9
    assert flatten(again)["model.channels"] == [8, 8]


def test_to_yaml_round_trips_with_defaults_and_relative_overrides(tmp_path, monkeypatch):
    """The resolved YAML saved with a run must mean the same thing when loaded from elsewhere:
    relative paths that came from defaults or the command line are taken from the cwd."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.root=my_corpus", "data.unlabelled=[extra]"])
    dumped = write_yaml(tmp_path / "runs" / "exp1" / "config.yaml", to_yaml(cfg))
    again = load_config(dumped)
    assert flatten(again) == flatten(cfg)
    assert Path(again.data.root).resolve() == (tmp_path / "my_corpus").resolve()
    assert Path(again.features.store).resolve() == (tmp_path / "runs" / "features").resolve()
    assert [Path(p).resolve() for p in again.data.unlabelled] == [(tmp_path / "extra").resolve()]


def test_flatten_gives_dotted_keys_for_every_leaf():
    flat = flatten(load_config(None, [*ROOT, "optim.top.lr=0.2"]))
    assert flat["optim.top.lr"] == 0.2
    assert flat["data.splits.train"] == "Train"
    assert not any(isinstance(v, dict) for v in flat.values())


def test_a_replaced_key_is_refused_naming_its_replacement(tmp_path):
    with pytest.raises(ConfigError, match=r"'cluster.enabled' was replaced by model.aux_head"):
        load_config(overrides=["data.root=x", "cluster.enabled=false"])
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  root: x\ncluster:\n  enabled: true\n")
    with pytest.raises(ConfigError, match=r"replaced by model.aux_head.*old.yaml"):
        load_config(path)


def test_a_config_saved_with_a_replaced_key_is_upgraded():
    """Checkpoints written before ``cluster.enabled`` was removed still load."""
    off = load_config(text="data:\n  root: x\ncluster:\n  enabled: false\n  k: 7\n")
    assert off.model.aux_head == "none" and off.cluster.k == 7
    on = load_config(text="data:\n  root: x\ncluster:\n  enabled: true\n")
    assert on.model.aux_head == "cluster"
    siamese = load_config(
        text="data: {root: x}\nmodel: {aux_head: siamese}\ncluster: {enabled: false}\n"
    )
    assert siamese.model.aux_head == "siamese"


@pytest.mark.parametrize(
    ("override", "value"), [("true", True), ("false", False), ("auto", "auto")]
)
def test_train_amp_takes_true_false_or_auto(override, value, tmp_path):
    assert load_config(overrides=[*ROOT, f"train.amp={override}"]).train.amp == value
    yaml_file = tmp_path / "amp.yaml"
    yaml_file.write_text(f"data:\n  root: /x\ntrain:\n  amp: {override}\n")
    assert load_config(yaml_file).train.amp == value


def test_train_amp_defaults_to_auto_and_refuses_anything_else():
    assert load_config(overrides=ROOT).train.amp == "auto"
    for bad in ("fast", "1", "[true]", "bf16"):
        with pytest.raises(ConfigError, match=r"'train\.amp': .* is not one of true, false, auto"):
            load_config(overrides=[*ROOT, f"train.amp={bad}"])
