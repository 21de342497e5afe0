"""Every shipped recipe validates and runs on real data of its modality."""

from __future__ import annotations

import shutil

import mne
import numpy as np
import pytest

from brainfm import open_store
from brainfm.errors import ConfigError
from brainfm.preprocessing.readers import MAXSHIELD_WARNING
from brainfm.preprocessing.recipe import Recipe, available_recipes, load_recipe
from brainfm.preprocessing.run import preprocess


def test_shipped_recipes():
    assert available_recipes() == ["barista", "brainomni", "default", "meg_gpt", "meg_gpt_source"]


@pytest.mark.parametrize("name", ["barista", "brainomni", "default", "meg_gpt", "meg_gpt_source"])
def test_recipe_validates_and_hash_is_stable(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.origin == f"packaged:{name}"
    assert recipe.description.strip()
    steps = recipe.build_steps()
    assert [s.name for s in steps] == [next(iter(entry)) for entry in recipe.steps]
    assert recipe.config_hash() == load_recipe(name).config_hash()
    assert recipe.config_hash() != recipe.config_hash(pattern="x")


def test_recipe_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstep: []\n")
    with pytest.raises(ConfigError, match="unknown key.*'step'.*Did you mean 'steps'"):
        load_recipe(bad)
    bad.write_text("name: x\npick: {types: [eeg, meg]}\n")
    with pytest.raises(ConfigError, match="unknown channel types \\['meg'\\]"):
        load_recipe(bad)
    bad.write_text("name: x\nsteps:\n  - bandpass: {l_freq: 1, hfreq: 40}\n")
    with pytest.raises(ConfigError, match="no parameter.*'hfreq'.*Did you mean 'h_freq'"):
        load_recipe(bad)
    bad.write_text("extends: bad.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_recipe(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="Could not parse"):
        load_recipe(bad)


@pytest.mark.parametrize(
    "text,match",
    [
        # a value outside the signature's range: the key, what is allowed and what arrived
        ("steps:\n  - resample: {sfreq: -5}\n",
         r"'sfreq' parameter of steps\[0\] \(resample\) in recipe '.*bad.yaml'\. Allowed values are a number > 0, "
         r"or a mapping of 'eeg', 'meg', 'ieeg' to a number > 0, but got an integer \(-5\)"),
        # a quoted number is a string, not a number (jsonargparse alone would parse it)
        ("steps:\n  - notch: {freqs: line}\n  - bandpass: {l_freq: \"0.1\"}\n",
         r"'l_freq' parameter of steps\[1\] \(bandpass\).*a number >= 0, or null, but got the string '0.1'"),
        ("steps:\n  - bandpass: {order: 4.5, method: iir}\n", r"'order'.*an integer > 0, but got a number \(4.5\)"),
        ("steps:\n  - resample: {sfreq: {eeg: 256, ieg: 512}}\n", r"got the key 'ieg'.*Did you mean 'ieeg'"),
        ("steps:\n  - notch: {freqs: [50, sixty]}\n", r"'freqs'.*'line', or a list, each item a number > 0"),
        ("steps:\n  - notch: {harmonics: \"yes\"}\n", r"'harmonics'.*true or false, but got the string 'yes'"),
        ("steps:\n  - resample: {sfreq: null}\n", r"'sfreq'.*but got null instead"),
        ("steps:\n  - bad_segments: {significance: 1.5}\n", r"'significance'.*a number > 0 and < 1, but got a number \(1.5\)"),
        ("steps:\n  - reference: {eeg: averge}\n", r"'eeg' parameter.*Allowed values are 'average', 'none'.*Did you mean 'average'"),
        ("write: {compresion: zstd}\n", r"write in recipe.*no parameter\(s\) \['compresion'\].*Did you mean 'compression'"),
        ("write: {chunk_mib: \"2\"}\n", r"'chunk_mib' parameter of write.*but got the string '2'"),
        ("crop: {tmax_s: 0}\n", r"'tmax_s' parameter of crop.*a number > 0, or null, but got an integer \(0\)"),
        ("pick: {types: eeg}\n", r"'types' parameter of pick.*a list, each item a string, but got a string \('eeg'\)"),
        ("overrides:\n  - {match: '*', line_freq: -50}\n", r"'line_freq' parameter of overrides\[0\]"),
        ("overrides:\n  - {macth: '*'}\n", r"overrides\[0\].*no parameter.*Did you mean 'match'"),
        ("name: 3\n", r"'name' parameter of recipe.*a string, but got an integer \(3\)"),
        ("on_nonfinite: drop\n", r"'on_nonfinite'.*'raise', 'bad_channel', but got a string \('drop'\)"),
    ],
)
def test_recipe_is_validated_against_typed_signatures(tmp_path, text, match):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_recipe(bad)
    # the same through extends: the child's own mistakes are found when it loads
    child = tmp_path / "child.yaml"
    child.write_text("extends: default\n" + text)
    with pytest.raises(ConfigError, match=match.replace("bad.yaml", "child.yaml")):
        load_recipe(child)


def test_shipped_recipes_validate_step_by_step():
    from brainfm.preprocessing.signatures import check_params
    from brainfm.preprocessing.steps import step_class

    for name in available_recipes():
        recipe = load_recipe(name)
        for index, entry in enumerate(recipe.steps):
            (step, params), = entry.items()
            assert check_params(step_class(step), params, f"steps[{index}]") == dict(params or {})


def test_bad_recipe_exits_2_before_any_file_is_touched(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    info = mne.create_info(["Cz", "Pz"], 100.0, "eeg")
    mne.io.RawArray(np.zeros((2, 1000)), info, verbose=False).save(folder / "a_raw.fif", verbose=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\nsteps:\n  - resample: {sfreq: -5}\n")
    store = tmp_path / "s.zarr"
    result = subprocess.run(
        [sys.executable, "-m", "brainfm.cli.main", "preprocess", str(folder), str(store), "--config", str(bad)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 2, result.stderr
    assert "'sfreq' parameter of steps[0] (resample)" in result.stderr and "(-5)" in result.stderr
    assert not store.exists()


def test_extends_overrides_only_given_keys(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: default\nname: child\nwrite: {bitround_keepbits: 12}\n")
    recipe = load_recipe(child)
    base = load_recipe("default")
    assert recipe.name == "child" and recipe.write.bitround_keepbits == 12
    assert recipe.steps == base.steps and recipe.pick == base.pick
    assert recipe.config_hash() != base.config_hash()


def test_recipe_roundtrips_through_its_dict():
    recipe = load_recipe("brainomni")
    data = recipe.to_dict()
    again = Recipe.from_dict(data, origin="copy")
    assert again.to_dict() == data


def test_brainomni_on_meg_and_eeg(shared_data, tmp_path):
    folder = tmp_path / "meg"
    folder.mkdir()
    shutil.copy(shared_data / "meg" / "fif" / "test_move_anon_erm_raw.fif", folder)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="brainomni")
    assert summary.failed == []
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert rec.sfreq == 256.0
    assert rec.channels["type"].value_counts().to_dict() == {"grad": 204, "mag": 102, "eeg": 60}
    steps = {s["step"]: s for s in rec.provenance["steps"]}
    assert steps["notch"]["effect"]["freqs"] == [50.0, 60.0]
    assert {k: steps["bandpass"]["effect"][k] for k in ("l_freq", "h_freq")} == {"l_freq": 0.1, "h_freq": 96.0}
    # a 1-s recording is shorter than the 0.1 Hz high-pass: MNE's warning is kept, not swallowed
    assert steps["bandpass"]["effect"]["warnings"] == [
        "bandpass: filter_length (8449) is longer than the signal (256), distortion is likely. "
        "Reduce filter length or filter a longer signal."
    ]
    assert steps["bandpass"]["effect"]["warnings"][0] in rec.provenance["warnings"]
    assert [w for w in rec.provenance["warnings"] if "Shielding" in w] == [MAXSHIELD_WARNING]  # once


def test_barista_laplacian_on_real_seeg(shared_data, tmp_path):
    folder = tmp_path / "ieeg"
    folder.mkdir()
    shutil.copy(shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif", folder)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="barista")
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert rec.sfreq == 2048.0
    channels = rec.channels
    seeg = channels[channels["type"] == "seeg"]
    # shaft ends have one neighbour only and are dropped by the default edge policy
    raw = mne.io.read_raw_fif(shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif", verbose=False)
    n_shafts = len({name.rstrip("0123456789") for name, kind in zip(raw.ch_names, raw.get_channel_types(), strict=True) if kind == "seeg"})
    assert len(seeg) == 74 - 2 * n_shafts
    assert (channels["type"] == "ecog").sum() == 320
    assert {s["step"] for s in rec.provenance["steps"]} >= {"notch", "reference", "resample"}


def test_meg_gpt_crops_and_marks_bad_segments(tmp_path):
    folder = tmp_path / "meg"
    folder.mkdir()
    sfreq = 1000.0
    info = mne.create_info([f"MEG{i:03d}" for i in range(8)], sfreq, "mag")
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, int(80 * sfreq))) * 1e-12
    data[:, int(60 * sfreq) : int(61 * sfreq)] *= 50  # a burst 30 s after the crop
    mne.io.RawArray(data, info, verbose=False).save(folder / "meg_raw.fif", verbose=False)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="meg_gpt")
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert rec.sfreq == 250.0 and rec.duration_s == pytest.approx(50.0, abs=0.01)
    bad = rec.events[rec.events["description"] == "BAD_segment"]
    assert len(bad) >= 1
    assert ((bad["onset_s"] <= 30.5) & (bad["onset_s"] + bad["duration_s"] >= 30.5)).any()
    # a recording shorter than the crop is refused with the reason
    short = tmp_path / "short"
    short.mkdir()
    mne.io.RawArray(data[:, :5000], info, verbose=False).save(short / "s_raw.fif", verbose=False)
    result = preprocess(short, tmp_path / "s2.zarr", recipe="meg_gpt")
    assert "crop.tmin_s" in result.failed[0]["error"]


def test_meg_gpt_source_keeps_parcel_time_courses(tmp_path):
    """Parcel time courses saved as misc channels of a FIF file (the source-space route) are stored at 250 Hz."""
    folder = tmp_path / "parcels"
    folder.mkdir()
    info = mne.create_info([f"parcel_{i:02d}" for i in range(52)], 1000.0, "misc")
    data = np.random.default_rng(1).standard_normal((52, 4000))
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_annotations(mne.Annotations([1.0], [0.5], ["BAD_segment"]))
    raw.save(folder / "sub-01_sflip_parc-raw.fif", verbose=False)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="meg_gpt_source")
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert rec.sfreq == 250.0 and rec.n_channels == 52 and set(rec.channels["type"]) == {"misc"}
    assert list(rec.events["description"]) == ["BAD_segment"]
    from brainfm.loading import WindowDataModule

    data = WindowDataModule(tmp_path / "s.zarr", window_s=0.324, channel_types=["misc"], val_fraction=0.0,
                            split_unit="recording")
    batch = next(iter(data.make_dataloader("train", shuffle=False)))
    assert batch.signal.shape[1:] == (52, 81) and bool(batch.channel_mask.all())
