"""Corpus-level metrics in plain numpy (no torch needed)."""

from __future__ import annotations

import numpy as np


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    mt, mp = y_true.mean(), y_pred.mean()
    cov = ((y_true - mt) * (y_pred - mp)).mean()
    denom = y_true.var() + y_pred.var() + (mt - mp) ** 2
    return float(2.0 * cov / denom) if denom > 0 else 0.0


def ccc_report(
    ratings: np.ndarray, predictions: np.ndarray, attributes: list[str]
) -> dict[str, float]:
    """CCC per attribute (columns of ``ratings``/``predictions``), plus their mean as ``ccc_mean``."""
    report = {f"ccc_{a}": ccc(ratings[:, j], predictions[:, j]) for j, a in enumerate(attributes)}
    report["ccc_mean"] = float(np.mean(list(report.values())))
    return report


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information with arithmetic-mean normalisation (as DeepCluster logs)."""
    _, a = np.unique(np.asarray(a), return_inverse=True)
    _, b = np.unique(np.asarray(b), return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
    ha, hb = _entropy(pa), _entropy(pb)
    if ha == 0.0 and hb == 0.0:
        return 1.0
    return max(0.0, mi / ((ha + hb) / 2.0))


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
