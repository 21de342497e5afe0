"""Acquisition boundaries: filters, resampling and bad-segment scoring never run across them."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from brainfm import open_store
from brainfm.data import empty_channel_table, empty_events
from brainfm.preprocessing import pipeline
from brainfm.preprocessing.boundaries import BOUNDARY_EVENT, boundary_cuts, mark_boundaries
from brainfm.preprocessing.recipe import load_recipe
from brainfm.preprocessing.run import preprocess
from brainfm.preprocessing.steps import SignalState

SFREQ = 500.0
SECONDS = 12.0
STEPS = """
steps:
  - notch: {freqs: [50.0]}
  - bandpass: {l_freq: 1.0, h_freq: 40.0}
  - resample: {sfreq: 250}
  - bad_segments: {types: [eeg], segment_samples: 250, modes: [amplitude, diff]}
"""


def _part(offset: float, freq: float, amplitude: float, seed: int, seconds: float = SECONDS) -> np.ndarray:
    """Six channels: a DC offset, a sine and noise; the two parts differ in all three."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SFREQ * seconds)) / SFREQ
    return offset + amplitude * np.sin(2 * np.pi * freq * t) + rng.standard_normal((6, t.size)) * 2e-6


def _raw(data: np.ndarray) -> mne.io.RawArray:
    info = mne.create_info([f"E{i}" for i in range(len(data))], SFREQ, "eeg")
    return mne.io.RawArray(data, info, verbose=False)


def _alone(data: np.ndarray, recipe) -> np.ndarray:
    """One part processed on its own with the recipe's channel-wise steps."""
    channels = empty_channel_table([f"E{i}" for i in range(len(data))], ["eeg"] * len(data))
    state = SignalState(data=data.astype(np.float32), sfreq=SFREQ, channels=channels, events=empty_events())
    pipeline.run_steps(state, [s for s in recipe.build_steps() if s.channelwise])
    return state.data


def test_concatenated_raws_are_filtered_and_scored_per_segment(tmp_path):
    first = _part(offset=4e-4, freq=7.0, amplitude=1e-5, seed=1)
    second = _part(offset=-3e-4, freq=11.0, amplitude=3e-5, seed=2)
    joined = mne.concatenate_raws([_raw(first), _raw(second)], verbose=False)
    assert sorted(joined.annotations.description) == ["BAD boundary", "EDGE boundary"]
    folder = tmp_path / "in"
    folder.mkdir()
    joined.save(folder / "joined_raw.fif", verbose=False)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("name: r\npick: {types: [eeg]}\n" + STEPS)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=str(recipe_file))
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    signal = np.asarray(rec.signal)
    cut = int(SECONDS * 250)  # the boundary, at the stored 250 Hz
    assert rec.sfreq == 250.0 and signal.shape == (6, 2 * cut)

    # each side equals that part processed alone, up to the samples next to the boundary
    recipe = load_recipe(recipe_file)
    left, right = _alone(first, recipe), _alone(second, recipe)
    scale = np.abs(left).max()
    np.testing.assert_allclose(signal[:, :cut], left, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(signal[:, cut:], right, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(signal[:, cut - 25 : cut], left[:, -25:], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(signal[:, cut : cut + 25], right[:, :25], rtol=0, atol=1e-4 * scale)
    # filtering across the boundary would have smeared the 0.7 mV step into both sides
    across = _alone(np.concatenate([first, second], axis=1), recipe)
    assert np.abs(across[:, cut - 25 : cut + 25] - signal[:, cut - 25 : cut + 25]).max() > 100 * 1e-4 * scale

    # bad-segment scoring did not flag the boundary (nor anything else: both parts are clean)
    events = rec.events
    assert not (events["description"] == "BAD_segment").any(), events
    boundary = events[events["description"].str.contains("boundary")]
    assert boundary["onset_s"].tolist() == pytest.approx([SECONDS, SECONDS])
    steps = {entry["step"]: entry for entry in rec.provenance["steps"]}
    assert steps["boundaries"]["effect"]["cuts_s"] == [SECONDS]
    assert steps["boundaries"]["effect"]["from_events"] == {"BAD boundary": 1, "EDGE boundary": 1}
    assert steps["boundaries"]["effect"]["segments_s"] == [[0.0, SECONDS], [SECONDS, 2 * SECONDS]]
    assert steps["boundaries"]["effect"]["events_added"] == 0  # MNE's BAD boundary is there already
    assert steps["bad_segments"]["effect"]["n_segments"] == 2 * SECONDS


@pytest.mark.parametrize(
    "description,duration,cuts",
    [
        ("BAD boundary", 0.0, [4.0]),  # mne.concatenate_raws
        ("EDGE boundary", 0.0, [4.0]),
        ("boundary", 0.25, [4.0]),  # EEGLAB: the duration is data removed, not a span
        ("New Segment/", 0.0, [4.0]),  # BrainVision, as MNE reads it
        ("BAD_ACQ_SKIP", 1.5, [4.0, 5.5]),  # a skipped stretch is a segment of its own
        ("BAD_segment", 1.0, []),  # an artefact, not a discontinuity
        ("Stimulus/S  1", 0.0, []),
    ],
)
def test_boundary_kinds(description, duration, cuts):
    events = pd.DataFrame({"onset_s": [0.0, 4.0], "duration_s": [0.0, duration],
                           "description": np.array([description, description], dtype=object)})
    found, counts = boundary_cuts(events, duration_s=10.0)
    assert found == pytest.approx(cuts)  # the marker at the first sample is not a cut
    assert counts == ({description: 1} if cuts else {})


def test_unmarked_boundaries_get_a_bad_event_that_loaders_skip():
    from brainfm.data.windows import bad_spans

    events = pd.DataFrame({"onset_s": [0.0, 2.0, 3.0], "duration_s": [0.0, 0.0, 0.0],
                           "description": np.array(["boundary", "boundary", "S 12"], dtype=object)})
    cuts, _ = boundary_cuts(events, duration_s=6.0)
    marked, n_added = mark_boundaries(events, cuts, sfreq=100.0)
    assert n_added == 1
    assert marked["description"].tolist() == ["boundary", "boundary", BOUNDARY_EVENT, "S 12"]
    spans = bad_spans(marked["onset_s"], marked["duration_s"], marked["description"], 100.0)
    assert spans.tolist() == [[200, 201]]  # a window across the cut is skipped
    again, n_again = mark_boundaries(marked, cuts, sfreq=100.0)
    assert n_again == 0 and len(again) == len(marked)


def test_resampling_runs_per_segment_and_keeps_the_cut_in_place():
    rng = np.random.default_rng(0)
    sfreq, n1, n2 = 1000.0, 3001, 4000  # the cut falls between output samples
    data = np.concatenate([np.full((2, n1), 1e-3), np.full((2, n2), -1e-3)], axis=1)
    data += rng.standard_normal(data.shape) * 1e-6
    channels = empty_channel_table(["E0", "E1"], ["eeg", "eeg"])
    state = SignalState(data=data.astype(np.float32), sfreq=sfreq, channels=channels, events=empty_events(),
                        boundaries_s=[n1 / sfreq])
    from brainfm.preprocessing.steps import build_step

    pipeline.run_steps(state, [build_step("resample", {"sfreq": 250})])
    assert state.n_times == round(data.shape[1] * 0.25)  # as long as one resampling of the whole
    cut = round(n1 * 0.25)
    assert state.boundaries_s == [cut / 250.0]
    # no anti-aliasing ringing from the 2 mV step: each side stays at its own level
    np.testing.assert_allclose(state.data[:, :cut], 1e-3, atol=2e-5)
    np.testing.assert_allclose(state.data[:, cut:], -1e-3, atol=2e-5)


def test_bad_segment_scoring_does_not_flag_the_boundary(tmp_path):
    # the cut at 12.5 s falls inside the second-long scoring segment [12, 13): scored as one
    # segment, the 0.7 mV step between the parts would make it the outlier
    first = _part(offset=4e-4, freq=7.0, amplitude=1e-5, seed=1, seconds=12.5)
    second = _part(offset=-3e-4, freq=7.0, amplitude=1e-5, seed=2)
    folder = tmp_path / "in"
    folder.mkdir()
    mne.concatenate_raws([_raw(first), _raw(second)], verbose=False).save(folder / "j_raw.fif", verbose=False)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("name: r\npick: {types: [eeg]}\nsteps:\n  - bad_segments: {types: [eeg], segment_samples: 500, significance: 0.01}\n")
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=str(recipe_file))
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert not (rec.events["description"] == "BAD_segment").any(), rec.events
    effect = {entry["step"]: entry for entry in rec.provenance["steps"]}["bad_segments"]["effect"]
    assert effect["n_segments"] == 25  # 12 + the half second before the cut + 12: none straddles it


@pytest.mark.parametrize("cuts", [[0.001, 0.002, 5.0, 9.999], [0.003, 0.0031], [9.9995]])
def test_segments_of_a_few_samples_are_processed(cuts):
    from brainfm.preprocessing.steps import build_step

    data = np.random.default_rng(0).standard_normal((3, 10_000)).astype(np.float32) * 1e-6
    channels = empty_channel_table(["E0", "E1", "E2"], ["eeg"] * 3)
    state = SignalState(data=data, sfreq=1000.0, channels=channels, events=empty_events(), boundaries_s=cuts, line_freq=50.0)
    steps = [build_step("notch", {"freqs": "line"}), build_step("bandpass", {"l_freq": 0.5, "h_freq": 40.0}),
             build_step("resample", {"sfreq": 256}), build_step("notch", {"freqs": [50.0], "method": "iir"}),
             build_step("bad_segments", {"types": ["eeg"], "segment_samples": 256})]
    pipeline.run_steps(state, steps)
    assert state.data.shape == (3, 2560) and np.isfinite(state.data).all()
    assert all(w.startswith(("notch: ", "bandpass: ")) for w in state.warnings)


def test_brainvision_new_segment_marker_cuts_the_signal(shared_data, tmp_path):
    import shutil

    folder = tmp_path / "bv"
    folder.mkdir()
    for suffix in (".vhdr", ".eeg"):
        shutil.copy(shared_data / "eeg" / "brainvision" / f"bv_dig_test{suffix}", folder)
    markers = (shared_data / "eeg" / "brainvision" / "bv_dig_test.vmrk").read_text()
    # the recording paused and resumed at data point 2501 (0.5 s at 5000 Hz)
    (folder / "bv_dig_test.vmrk").write_text(markers.rstrip("\n") + "\nMk3=New Segment,,2501,1,0,20000101120001000000\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\npick: {types: [eeg]}\nsteps:\n  - bandpass: {l_freq: 1.0, h_freq: 40.0}\n")
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=str(recipe))
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    boundaries = next(e for e in rec.provenance["steps"] if e["step"] == "boundaries")["effect"]
    assert boundaries["cuts_s"] == [0.5] and boundaries["from_events"] == {"New Segment/": 1}
    assert boundaries["segments_s"] == [[0.0, 0.5], [0.5, 1.0]]
    added = rec.events[rec.events["description"] == BOUNDARY_EVENT]
    assert added["onset_s"].tolist() == [0.5] and boundaries["events_added"] == 1


def test_eeglab_boundary_event_cuts_the_signal(tmp_path):
    pytest.importorskip("eeglabio")
    first = _part(offset=4e-4, freq=7.0, amplitude=1e-5, seed=1)
    second = _part(offset=-3e-4, freq=11.0, amplitude=3e-5, seed=2)
    raw = _raw(np.concatenate([first, second], axis=1))
    raw.set_annotations(mne.Annotations([SECONDS], [0.0], ["boundary"]))
    folder = tmp_path / "set"
    folder.mkdir()
    mne.export.export_raw(folder / "joined.set", raw, verbose=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\npick: {types: [eeg]}\n" + STEPS)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=str(recipe))
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    boundaries = next(e for e in rec.provenance["steps"] if e["step"] == "boundaries")["effect"]
    assert boundaries["cuts_s"] == [SECONDS] and boundaries["from_events"] == {"boundary": 1}
    loaded = load_recipe(recipe)
    cut = int(SECONDS * 250)
    signal = np.asarray(rec.signal)
    scale = np.abs(first).max()
    np.testing.assert_allclose(signal[:, cut - 25 : cut], _alone(first, loaded)[:, -25:], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(signal[:, cut : cut + 25], _alone(second, loaded)[:, :25], rtol=0, atol=1e-4 * scale)
    assert not (rec.events["description"] == "BAD_segment").any()
