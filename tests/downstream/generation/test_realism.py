"""The realism report on arrays and on a real EEG store, with the AR baseline beside the generated data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainfm.downstream.generation import fit_ar_baseline, generate_ar, load_signals, realism_report

SFREQ = 250.0
RECIPE = """\
name: realism-tests
description: eegmat EEG, the first 30 s at 250 Hz.
pick:
  types: [eeg]
crop: {tmin_s: 0.0, tmax_s: 30.0}
steps:
  - resample: {sfreq: 250, method: polyphase}
  - units: {on_implausible: warn}
"""


def _recordings(n, seed=0, n_channels=3, seconds=12):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    out = []
    for i in range(n):
        beta = np.sin(2 * np.pi * (16 + 2 * i) * t) * (np.sin(2 * np.pi * 0.4 * t + i) > 0.3)
        out.append(rng.uniform(0.5, 2, (n_channels, 1)) * (rng.standard_normal((n_channels, t.size)) + 3 * beta))
    return out


def test_identical_data_gives_zero_errors_and_perfect_identification():
    real = _recordings(3)
    report = realism_report(real, [r.copy() for r in real], SFREQ, fingerprint=("psd", "spatial"))
    versus = report["versus_real"]["generated"]
    assert versus["psd"]["broadband"] == 0.0
    assert all(band["relative_error"] == 0.0 for band in versus["psd"]["bands"].values())
    assert versus["bursts"] == {"lifetime_ms": 0.0, "interval_ms": 0.0, "occupancy": 0.0}
    assert versus["fingerprint"]["psd"]["top1"] == 1.0 and versus["fingerprint"]["spatial"]["top1"] == 1.0
    assert report["sources"]["real"]["n_recordings"] == 3
    assert report["sources"]["real"]["seconds"] == pytest.approx(36.0)
    json.dumps(report, allow_nan=False)  # JSON-ready, no NaN


def test_other_data_gives_errors_and_names_every_source():
    real = _recordings(3)
    louder_beta = [r + 4 * np.sin(2 * np.pi * 20 * np.arange(r.shape[1]) / SFREQ) for r in _recordings(3, seed=1)]
    noise = [np.random.default_rng(2).standard_normal(r.shape) for r in real]
    report = realism_report(real, {"model": louder_beta}, SFREQ, baselines={"noise": noise}, fingerprint=())
    assert list(report["sources"]) == ["real", "model", "noise"]
    model, noise = report["versus_real"]["model"], report["versus_real"]["noise"]
    assert model["fingerprint"] is None
    # after z-scoring, the model's strong 20 Hz line takes power from every band; white noise is flat
    for comparison in (model, noise):
        assert all(band["relative_error"] > 0.3 for band in comparison["psd"]["bands"].values())
        assert comparison["psd"]["broadband"] > 0.3
    # white noise has no beta bursts of the real kind: its "bursts" are brief noise fluctuations
    assert report["sources"]["noise"]["bursts"]["lifetime_ms"] < 0.5 * report["sources"]["real"]["bursts"]["lifetime_ms"]
    assert noise["bursts"]["lifetime_ms"] > 0.5


def test_mismatched_inputs_are_refused_with_what_differs():
    real = _recordings(2)
    with pytest.raises(ValueError, match="generated has 2 channels but real has 3"):
        realism_report(real, [r[:2] for r in real], SFREQ)
    with pytest.raises(ValueError, match="sfreq is needed"):
        realism_report(real, real)
    with pytest.raises(ValueError, match="baseline name 'generated' is already used"):
        realism_report(real, real, SFREQ, baselines={"generated": real})
    with pytest.raises(ValueError, match="Invalid value for the 'fingerprint' parameter"):
        realism_report(real, real, SFREQ, fingerprint=("psdd",))
    report = realism_report(real, real[:1], SFREQ, fingerprint=("psd",))
    assert "needs one generated recording per real recording" in report["versus_real"]["generated"]["fingerprint"]["skipped"]


@pytest.fixture(scope="module")
def eeg_store(shared_data, tmp_path_factory):
    """Three eegmat subjects (mental arithmetic, 20 EEG channels), 30 s each at 250 Hz, made by ``preprocess``."""
    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("realism")
    folder = root / "eegmat"
    folder.mkdir()
    for subject in ("00", "01", "02"):
        source = shared_data / "eeg" / "eegmat" / f"Subject{subject}_2.edf"
        if not source.is_file():
            pytest.skip(f"{source} not found")
        shutil.copy(source, folder)
    (root / "realism-tests.yaml").write_text(RECIPE)
    summary = preprocess(folder, root / "store", recipe=root / "realism-tests.yaml", dataset="eegmat",
                         pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)", progress=False)
    assert summary.failed == [] and len(summary.processed) == 3, summary.failed
    return root / "store"


@pytest.mark.slow
def test_ar_baseline_against_a_real_eeg_store_writes_json_and_figures(eeg_store, tmp_path):
    signals, sfreq, names, ids = load_signals(eeg_store)
    assert sfreq == SFREQ and len(ids) == 3 and len(names) == signals[0].shape[0] == 20  # 19 scalp + A2-A1
    z = [(s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, keepdims=True) for s in signals]
    model = fit_ar_baseline(z, n_lags=80)
    assert model.stable.all()
    generated = generate_ar(model, signals[0].shape[1], n_recordings=3, seed=0)
    report = realism_report(eeg_store, {"ar80": generated}, out_dir=tmp_path, fingerprint=("psd",))
    assert report["sfreq"] == SFREQ and report["channel_names"] == names
    # an 80-lag AR model reproduces the real spectrum closely in every band (it is fitted to it) ...
    for band in report["versus_real"]["ar80"]["psd"]["bands"].values():
        assert band["relative_error"] < 0.5
    # ... and real EEG beta bursts last longer than the AR model's, on average over channels
    real_bursts, ar_bursts = report["sources"]["real"]["bursts"], report["sources"]["ar80"]["bursts"]
    assert real_bursts["lifetime_ms"] > 0 and ar_bursts["lifetime_ms"] > 0
    written = json.loads((tmp_path / "realism.json").read_text())
    assert written["versus_real"]["ar80"]["psd"]["broadband"] == report["versus_real"]["ar80"]["psd"]["broadband"]
    for figure in ("psd.png", "bursts.png"):
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
