"""The failpoint testing aid itself: which call fires, which signal, and nothing when unset."""

from __future__ import annotations

import signal

import pytest

from deepemocluster.runtime import faults

pytestmark = pytest.mark.usefixtures("stray_signals_fail_the_test")


@pytest.fixture
def usr1_hits():
    hits: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: hits.append(signum))
    yield hits
    signal.signal(signal.SIGUSR1, previous)


def test_the_counted_call_of_the_named_point_fires(failpoint, usr1_hits):
    failpoint("other:1:term,here:3:usr1")
    for _ in range(5):
        faults.failpoint("here")
        faults.failpoint("elsewhere")
    assert usr1_hits == [signal.SIGUSR1]  # the 3rd call of "here" only


def test_a_new_spec_counts_from_zero(failpoint, usr1_hits, monkeypatch):
    failpoint("here:2:usr1")
    faults.failpoint("here")
    monkeypatch.setenv(faults.ENV, "here:1:usr1")  # changed without reset(): still call 1
    faults.failpoint("here")
    assert usr1_hits == [signal.SIGUSR1]


def test_unset_does_nothing_and_a_bad_spec_is_named(failpoint, usr1_hits):
    failpoint("")
    faults.failpoint("here")
    assert usr1_hits == []
    failpoint("here:soon")
    with pytest.raises(ValueError, match="'soon' is neither a count nor a signal"):
        faults.failpoint("here")
