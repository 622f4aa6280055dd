"""benchmarks/quality.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import numpy as np
import pytest

from deepemocluster.config.schema import ATTRIBUTES
from tests.support.bench import load_benchmark, machine_ok, run_quick

quality = load_benchmark("quality")


@pytest.mark.slow
def test_quality_benchmark_quick(tmp_path):
    stdout, result = run_quick("quality.py", tmp_path / "quality.json")
    assert "Test1 CCC mean [95 % interval]" in stdout
    assert result["benchmark"] == "quality" and result["mode"] == "quick"
    machine_ok(result["machine"])
    methods = ("ridge", "ridge_egemaps", "no_clustering", "clustering")
    assert result["methods"] == list(methods)
    assert result["skipped"] == {}
    assert set(result["anchors"]) == {"ridge", "ridge_egemaps"}
    assert "eGeMAPSv02" in result["anchors"]["ridge_egemaps"]
    assert "non-commercial" in result["licence"]["ridge_egemaps"]
    assert result["baseline_rule"] == quality.BASELINE_RULE
    assert result["machine"]["opensmile"]
    assert not any(o.startswith(("data.root", "tracking.")) for o in result["overrides"])
    runs = {(r["fraction"], r["seed"], r["method"]): r for r in result["runs"]}
    assert set(runs) == {(f, s, m) for f in (1.0, 0.1) for s in (0, 1) for m in methods}
    for r in runs.values():
        scores = r["ccc"]
        assert set(scores) == {"arousal", "valence", "dominance", "mean"}
        assert all(-1 <= v <= 1 for v in scores.values())
        assert scores["mean"] == pytest.approx(np.mean([scores[a] for a in ATTRIBUTES]))
    # with every Train label the ridge is the same whatever the seed; at 10 % the seed picks
    # which utterances keep their labels
    assert runs[1.0, 0, "ridge"]["ccc"] == runs[1.0, 1, "ridge"]["ccc"]
    assert runs[0.1, 0, "ridge"]["ccc"] != runs[0.1, 1, "ridge"]["ccc"]
    assert runs[1.0, 0, "ridge"]["ccc"]["arousal"] > 0.5  # pooled statistics carry arousal
    assert runs[1.0, 0, "ridge_egemaps"]["ccc"]["arousal"] > 0.5  # so do loudness and pitch
    for anchor in ("ridge", "ridge_egemaps"):
        assert set(runs[1.0, 0, anchor]["alpha"].values()) <= set(result["ridge"]["alphas"])
        assert set(runs[1.0, 0, anchor]["dev_ccc"]) == set(ATTRIBUTES)
    assert runs[1.0, 0, "ridge_egemaps"]["ccc"] == runs[1.0, 1, "ridge_egemaps"]["ccc"]

    assert set(result["summary"]) == {"1.0", "0.1"}
    for fraction, summary in result["summary"].items():
        assert summary["seeds"] == [0, 1]
        f = float(fraction)
        assert set(summary["methods"]) == {*methods, "baseline"}
        baseline = summary["baseline"]
        assert baseline["anchors"] == ["ridge", "ridge_egemaps"]
        for a in ATTRIBUTES:  # the anchor with the higher mean Test CCC (ties: the first)
            means = {
                m: np.mean([runs[f, s, m]["ccc"][a] for s in (0, 1)])
                for m in ("ridge", "ridge_egemaps")
            }
            assert baseline["anchor"][a] == max(means, key=lambda m: (means[m], m == "ridge"))
            assert baseline["test_means"][baseline["anchor"][a]][a] == pytest.approx(
                max(means.values())
            )
            assert baseline["dev_choice"][a] in means
        chosen = {
            s: {a: runs[f, s, baseline["anchor"][a]]["ccc"][a] for a in ATTRIBUTES} for s in (0, 1)
        }
        for s in (0, 1):
            chosen[s]["mean"] = np.mean(list(chosen[s].values()))
        assert set(summary["differences"]) == {
            "clustering-baseline",
            "no_clustering-baseline",
            "clustering-ridge",
            "no_clustering-ridge",
            "clustering-no_clustering",
            "ridge_egemaps-ridge",
        }
        for method, cells in summary["methods"].items():
            for key, cell in cells.items():
                if method == "baseline":
                    values = [chosen[s][key] for s in (0, 1)]
                else:
                    values = [runs[f, s, method]["ccc"][key] for s in (0, 1)]
                assert cell["mean"] == pytest.approx(np.mean(values))
                low, high = cell["ci95"]
                assert low <= cell["mean"] <= high
                # t(0.975, 1 degree of freedom) = 12.706; for two seeds s/√2 is the ddof-0 std
                assert high - cell["mean"] == pytest.approx(12.706 * np.std(values), rel=1e-3)
        for pair, cells in summary["differences"].items():
            a, b = pair.split("-")
            for key, cell in cells.items():
                ccc = {m: [runs[f, s, m]["ccc"][key] for s in (0, 1)] for m in methods}
                ccc["baseline"] = [chosen[s][key] for s in (0, 1)]
                expected = np.subtract(ccc[a], ccc[b])
                assert cell["per_seed"] == pytest.approx(expected)
        assert summary["ratio_to_ridge"]["ridge"] == 1.0
        assert summary["ratio_to_baseline"]["baseline"] == 1.0
        # the baseline is at least as strong as every anchor on every attribute's mean
        for m in ("ridge", "ridge_egemaps"):
            for a in ATTRIBUTES:
                assert (
                    summary["methods"]["baseline"][a]["mean"]
                    >= summary["methods"][m][a]["mean"] - 1e-12
                )


@pytest.mark.slow
def test_quality_benchmark_compares_values_of_a_key(tmp_path):
    """``--compare``: each model method once per value, paired against the first value and the
    ridge (the model method without clustering: the pairing is the same, the runs shorter); the
    model runs two at a time in worker processes (``--jobs 2``)."""
    extra = ("--fractions", "1.0", "--methods", "ridge", "no_clustering", "--jobs", "2")
    _, result = run_quick(
        "quality.py", tmp_path / "q.json", *extra, "--compare", "model.pooling=mean,attention"
    )
    names = ["ridge", "no_clustering[mean]", "no_clustering[attention]"]
    assert result["methods"] == names and result["jobs"] == 2
    assert result["summary"]["1.0"]["baseline"]["anchor"] == dict.fromkeys(ATTRIBUTES, "ridge")
    assert result["compare"] == {"key": "model.pooling", "values": ["mean", "attention"]}
    runs = {(r["seed"], r["method"]): r for r in result["runs"]}
    assert set(runs) == {(s, m) for s in (0, 1) for m in names}
    assert runs[0, "no_clustering[attention]"]["compared"] == ["model.pooling=attention"]
    assert runs[0, "no_clustering[mean]"]["compared"] == ["model.pooling=mean"]
    differences = result["summary"]["1.0"]["differences"]
    assert set(differences) == {
        "no_clustering[attention]-no_clustering[mean]",
        "no_clustering[mean]-ridge",
        "no_clustering[attention]-ridge",
        "no_clustering[mean]-baseline",
        "no_clustering[attention]-baseline",
    }
    for pair, cells in differences.items():
        a, b = pair.split("-")
        b = "ridge" if b == "baseline" else b  # the one anchor that ran
        expected = [runs[s, a]["ccc"]["mean"] - runs[s, b]["ccc"]["mean"] for s in (0, 1)]
        assert cells["mean"]["per_seed"] == pytest.approx(expected)


def test_a_comparison_pairs_clustering_with_no_clustering_at_each_value():
    names = ["ridge", "no_clustering[a]", "clustering[a]", "no_clustering[b]", "clustering[b]"]
    pairs = quality.differences(names, ("model.x", ["a", "b"]))
    assert set(pairs) == {
        ("no_clustering[b]", "no_clustering[a]"),
        ("clustering[b]", "clustering[a]"),
        ("clustering[a]", "no_clustering[a]"),
        ("clustering[b]", "no_clustering[b]"),
        *((n, "ridge") for n in names[1:]),
    }
    with_baseline = quality.differences(
        [*names, "ridge_egemaps", "baseline"], ("model.x", ["a", "b"])
    )
    assert set(with_baseline) - set(pairs) == {
        *((n, "baseline") for n in names[1:]),
        ("ridge_egemaps", "ridge"),
    }


def test_the_baseline_is_per_attribute_the_anchor_with_the_higher_mean_test_ccc():
    """Hand-made runs: ridge wins arousal, ridge_egemaps valence; dominance ties (0.5, exact in binary)
    and keeps the first anchor; Development would have chosen otherwise on arousal."""
    keys = ["arousal", "valence", "dominance", "mean"]

    def run(method, seed, test, dev):
        ccc = dict(zip(keys[:3], test, strict=True))
        ccc["mean"] = float(np.mean(test))
        return {
            "fraction": 1.0,
            "seed": seed,
            "method": method,
            "ccc": ccc,
            "dev_ccc": dict(zip(keys[:3], dev, strict=True)),
        }

    runs = [
        run("ridge", 0, (0.8, 0.2, 0.5), (0.1, 0.2, 0.3)),
        run("ridge", 1, (0.6, 0.4, 0.5), (0.1, 0.2, 0.3)),
        run("ridge_egemaps", 0, (0.5, 0.6, 0.25), (0.9, 0.8, 0.3)),
        run("ridge_egemaps", 1, (0.7, 0.4, 0.75), (0.9, 0.8, 0.3)),
    ]
    names = ["ridge", "ridge_egemaps", "baseline"]
    summary = quality.summarise(runs, 1.0, keys, names, [("ridge_egemaps", "baseline")])
    assert summary["baseline"]["anchor"] == {
        "arousal": "ridge",
        "valence": "ridge_egemaps",
        "dominance": "ridge",
    }
    assert summary["baseline"]["dev_choice"]["arousal"] == "ridge_egemaps"
    cells = summary["methods"]["baseline"]
    assert cells["arousal"]["mean"] == pytest.approx(0.7)
    assert cells["valence"]["mean"] == pytest.approx(0.5)
    assert cells["mean"]["mean"] == pytest.approx(
        np.mean([(0.8 + 0.6 + 0.5) / 3, (0.6 + 0.4 + 0.5) / 3])
    )
    assert summary["differences"]["ridge_egemaps-baseline"]["arousal"]["per_seed"] == pytest.approx(
        [-0.3, 0.1]
    )
