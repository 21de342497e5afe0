"""THINGS-EEG2 / THINGS-MEG preprocessed layouts (spec §3.1, §3.2) and stage 2 from the CLI.

Real THINGS files are not here; the fixtures write tiny files in the exact layouts the
reference reads (pickled dicts under ``sub-XX``, image folders named ``00001_concept``).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from brainfm.checkpoint import read_checkpoint
from brainfm.cli.main import main
from brainfm.downstream.retrieval.things_layouts import load_things, read_pickled_arrays
from brainfm.errors import ConfigError, ReadError

TRAIN = ["aardvark", "bee", "cat", "dog", "eel", "fox"]
TEST = ["gnu", "hen", "ibis"]
N_CHANS, SFREQ = 4, 50.0
TIMES = np.arange(-10, 50) / SFREQ  # -0.2 .. 0.98 s: 60 samples, 50 from 0 s


def _images(root, split, concepts, per_concept):
    for i, concept in enumerate(concepts, start=1):
        folder = root / split / f"{i:05d}_{concept}"
        folder.mkdir(parents=True)
        for j in range(per_concept):
            (folder / f"{concept}_{j:02d}b.jpg").write_bytes(b"")


def _pattern(concept: str) -> np.ndarray:
    seed = sum(ord(c) for c in concept)
    return np.random.default_rng(seed).standard_normal((N_CHANS, TIMES.size)).astype(np.float32)


@pytest.fixture
def things(tmp_path):
    """THINGS-EEG2 (2 subjects; 2 images x 3 repetitions per training concept, 1 image x 4 test
    repetitions) and THINGS-MEG (1 subject, 2 events per concept) in their preprocessed layouts."""
    rng = np.random.default_rng(0)
    eeg_images, meg_images = tmp_path / "eeg_images", tmp_path / "meg_images"
    _images(eeg_images, "training_images", TRAIN, 2)
    _images(eeg_images, "test_images", TEST, 1)
    _images(meg_images, "training_images", TRAIN, 2)
    _images(meg_images, "test_images", TEST, 2)
    for subject in ("sub-01", "sub-02"):
        folder = tmp_path / "eeg" / subject
        folder.mkdir(parents=True)
        for name, concepts, n_images, n_reps in (("training", TRAIN, 2, 3), ("test", TEST, 1, 4)):
            data = np.stack([np.stack([_pattern(c) + 0.3 * rng.standard_normal((N_CHANS, TIMES.size)) for _ in range(n_reps)])
                             for c in concepts for _ in range(n_images)]).astype(np.float32)
            # the NICE/ATM scripts pickle the dict into a file named .npy
            content = {"preprocessed_eeg_data": data[..., 10:], "ch_names": ["O1", "Oz", "O2", "Pz"], "times": TIMES}
            with open(folder / f"preprocessed_eeg_{name}.npy", "wb") as file:
                pickle.dump(content, file, protocol=4)
    folder = tmp_path / "meg" / "sub-01"
    folder.mkdir(parents=True)
    for name, concepts in (("training", TRAIN), ("test", TEST)):
        data = np.stack([_pattern(c) + 0.3 * rng.standard_normal((N_CHANS, TIMES.size)) for c in concepts for _ in range(2)])
        content = {"meg_data": data.astype(np.float32), "ch_names": ["MLO11", "MLO12", "MRO11", "MRO12"], "times": TIMES}
        (folder / f"preprocessed_meg_{name}.pkl").write_bytes(pickle.dumps(content))
    concepts = {c: rng.standard_normal(8).astype(np.float32) for c in TRAIN + TEST}
    np.savez(tmp_path / "concepts.npz", **concepts)
    return tmp_path


def test_things_eeg2_trials_follow_the_image_folders_and_drop_the_baseline(things):
    trials = load_things("things_eeg2", things / "eeg", things / "eeg_images", "train", tmin=0.0, tmax=1.0)
    # 2 subjects x 6 concepts x 2 images x 3 repetitions; 'times' keeps the baseline, the data do not
    assert trials.signals.shape == (72, N_CHANS, 50)
    assert trials.keys[:7] == ["aardvark_00b"] * 3 + ["aardvark_01b"] * 3 + ["bee_00b"]
    assert trials.concepts[6] == "bee" and list(trials.subjects[[0, 36]]) == ["sub-01", "sub-02"]
    cropped = load_things("things_eeg2", things / "eeg", things / "eeg_images", "test", subjects=["sub-02"],
                          targets="concept", tmin=0.2, tmax=0.4)
    assert cropped.signals.shape == (12, N_CHANS, 10) and cropped.keys[:5] == ["gnu"] * 4 + ["hen"]
    full = load_things("things_eeg2", things / "eeg", things / "eeg_images", "test", subjects=["sub-02"])
    np.testing.assert_array_equal(cropped.signals, full.signals[:, :, 10:20])


def test_things_meg_test_trials_target_their_concepts_first_image(things):
    trials = load_things("things_meg", things / "meg", things / "meg_images", "test")
    assert trials.signals.shape == (6, N_CHANS, 50)
    assert trials.keys == ["gnu_00b", "gnu_00b", "hen_00b", "hen_00b", "ibis_00b", "ibis_00b"]
    train = load_things("things_meg", things / "meg", things / "meg_images", "train")
    assert train.keys[:2] == ["aardvark_00b", "aardvark_01b"]  # training events keep their own image


def test_a_mismatched_image_folder_is_refused(things):
    (things / "eeg_images" / "test_images" / "00004_jay").mkdir()
    (things / "eeg_images" / "test_images" / "00004_jay" / "jay_00b.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds 3 images, but .*test_images lists 4"):
        load_things("things_eeg2", things / "eeg", things / "eeg_images", "test")


class _Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_that_would_run_code_are_refused(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"meg_data": _Boom()}))
    with pytest.raises(ReadError, match="refusing to load builtins.print"):
        read_pickled_arrays(tmp_path / "evil.pkl")
    assert "pwned" not in capsys.readouterr().out
    np.save(tmp_path / "saved.npy", np.array({"x": np.arange(3)}, dtype=object), allow_pickle=True)
    np.testing.assert_array_equal(read_pickled_arrays(tmp_path / "saved.npy")["x"], np.arange(3))
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ReadError, match="plain float64 array"):
        read_pickled_arrays(tmp_path / "plain.npy")


def _stage1(things, name, layout, root, images, n_steps=40):
    config = {
        "data": {"layout": layout, "root": str(root), "images": str(images), "targets": "concept",
                 "embeddings": "concepts.npz", "tmin": 0.0, "tmax": 1.0},
        "model": {"medformer": {"d_model": 32, "n_heads": 2, "d_ff": 32, "temporal_kernel": 5, "pool_kernel": 5,
                                "pool_stride": 2, "n_filters": 8, "augmentations": []}},
        "train": {"n_steps": n_steps, "batch_size": 12, "lr": 1e-3},
        "eval": {"k": [2, 3], "n_trials": 500},
        "output": f"run_{name}",
    }
    path = things / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_stage1_then_stage2_from_the_cli(things, capsys):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eeg = _stage1(things, "eeg", "things_eeg2", things / "eeg", things / "eeg_images")
        meg = _stage1(things, "meg", "things_meg", things / "meg", things / "meg_images")
        for config in (eeg, meg):
            assert main(["retrieve", "fit", "--config", str(config)]) == 0
        capsys.readouterr()
        assert main(["retrieve", "test", "--config", str(eeg), "--json"]) == 0
        eeg_results = json.loads(capsys.readouterr().out)
        # the dataset's own test split: 3 concepts per subject, 4 repetitions averaged, 2 subjects
        assert eeg_results["n_items"] == 6 and eeg_results["n_subjects"] == 2 and set(eeg_results["k"]) == {"2", "3"}
        shared = {"shared": {"adapters": {"eeg": "eeg.yaml", "meg": "meg.yaml"}, "n_experts": 3, "router_hidden": 16,
                             "n_epochs": 3},
                  "train": {"batch_size": 12, "lr": 1e-3}, "eval": {"k": [2, 3], "n_trials": 500}, "output": "run_shared"}
        (things / "shared.yaml").write_text(yaml.safe_dump(shared))
        assert main(["retrieve", "fit", "--config", str(things / "shared.yaml")]) == 0
        capsys.readouterr()
        assert main(["retrieve", "test", "--config", str(things / "shared.yaml"), "--json"]) == 0
    finally:
        torch.set_num_threads(previous)
    results = json.loads(capsys.readouterr().out)
    assert set(results["modalities"]) == {"eeg", "meg"}
    assert results["modalities"]["meg"]["n_items"] == 3  # 2 events of each test concept averaged
    checkpoint = read_checkpoint(things / "run_shared" / "model.pt")
    retrieval = checkpoint["brainfm"]["retrieval"]
    # every batch one modality, taking turns until MEG's one full batch per epoch is used (3 epochs);
    # the frozen adapters are the stage-1 weights
    modalities = retrieval["loss_modalities"]
    assert modalities[:3] == ["eeg", "meg", "eeg"] and modalities.count("meg") == 3 and modalities.count("eeg") == 3 * 72 // 12
    stage1 = read_checkpoint(things / "run_eeg" / "model.pt")["state_dict"]
    for name, value in stage1.items():
        if name.startswith("model."):
            torch.testing.assert_close(checkpoint["state_dict"][f"model.adapters.eeg.{name[6:]}"], value)
    assert (things / "run_shared" / "examples_meg.png").read_bytes()[:4] == b"\x89PNG"
    assert "## eeg" in (things / "run_shared" / "results.md").read_text()
