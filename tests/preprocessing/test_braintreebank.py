"""The Brain Treebank source: a tiny dataset written by the test in the dataset's own layout."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from brainfm import open_store
from brainfm.errors import SidecarError
from brainfm.preprocessing.discover import discover
from brainfm.preprocessing.readers import read_source
from brainfm.preprocessing.run import preprocess

SFREQ = 2048
N_TIMES = 4 * SFREQ
# file order; '*' and '#' marks are part of some real label files and are dropped
LABELS = ["T1b1*", "T1b2", "T1b3", "T1b4#", "F3a1", "F3a2", "F3a3", "F3a4", "DC10"]
LOCALIZATION = pd.DataFrame({
    "Electrode": ["T1b1", "T1b2", "T1b3", "T1b4", "F3a1", "F3a2", "F3a3"],  # F3a4 has no row
    "L": [60, 61, 62, 63, 150, 151, 152],
    "I": [140, 140, 141, 141, 90, 91, 92],
    "P": [120, 121, 122, 123, 60, 61, 62],
    "Destrieux": ["ctx_lh_G_temporal_middle", "ctx_lh_G_temporal_middle", "Left-Hippocampus", "Left-Hippocampus",
                  "ctx_rh_G_front_middle", "ctx_rh_G_front_middle", "Right-Inf-Lat-Vent"],
    "DesikanKilliany": ["ctx-lh-middletemporal"] * 2 + ["Left-Hippocampus"] * 2 + ["ctx-rh-rostralmiddlefrontal"] * 2
    + ["Right-Inf-Lat-Vent"],
})


def _signals(rng: np.random.Generator) -> np.ndarray:
    """Microvolts: T1b contacts share a linear gradient along the shaft plus small noise."""
    t = np.arange(N_TIMES) / SFREQ
    common = 50.0 * np.sin(2 * np.pi * 7.0 * t)
    data = rng.standard_normal((len(LABELS), N_TIMES)) * 20.0
    for contact in range(4):
        data[contact] = common * (contact + 1) + rng.standard_normal(N_TIMES) * 0.5
    data[-1] = (t % 1.0 < 0.01) * 5000.0  # trigger pulses
    return data.astype(np.float32)


@pytest.fixture
def treebank(tmp_path):
    root = tmp_path / "braintreebank"
    (root / "all_subject_data").mkdir(parents=True)
    (root / "electrode_labels" / "sub_1").mkdir(parents=True)
    (root / "localization" / "sub_1").mkdir(parents=True)
    (root / "electrode_labels" / "sub_1" / "electrode_labels.json").write_text(json.dumps(LABELS))
    LOCALIZATION.to_csv(root / "localization" / "sub_1" / "depth-wm.csv", index=False)
    (root / "corrupted_elec.json").write_text(json.dumps({"sub_1": ["F3a1"], "sub_2": ["X1"]}))
    data = _signals(np.random.default_rng(0))
    with h5py.File(root / "all_subject_data" / "sub_1_trial002.h5", "w") as handle:
        group = handle.create_group("data")
        for i, row in enumerate(data):
            group.create_dataset(f"electrode_{i}", data=row)
    (root / "all_subject_data" / "notes.txt").write_text("not a trial")
    return root, data


def test_discovery_finds_trials_with_their_companions(treebank):
    root, _ = treebank
    found = discover(root)
    assert [s.format for s in found.sources] == ["braintreebank"]
    source = found.sources[0]
    assert (source.identity.subject, source.identity.run) == ("1", "002")
    assert source.recording_id == "braintreebank_sub-1_run-002"
    assert source.companions["labels"].name == "electrode_labels.json"
    assert source.companions["localization"].name == "depth-wm.csv"
    assert source.path in source.files and source.companions["localization"] in source.files
    assert found.ignored == {".txt": ["all_subject_data/notes.txt"]}


def test_reader_builds_the_channel_table_and_reads_volts_lazily(treebank):
    root, data = treebank
    reading = read_source(discover(root).sources[0])
    table = reading.channels
    assert table["name"].tolist() == [name.strip("*#") for name in LABELS]
    assert table["type"].tolist() == ["seeg"] * 8 + ["misc"]
    assert set(table.loc[table["type"] == "seeg", "unit"]) == {"V"}
    assert table["group"].tolist()[:8] == ["T1b"] * 4 + ["F3a"] * 4
    # regions: the Destrieux label; an electrode without a localisation row has none
    assert table.at[0, "region"] == "ctx_lh_G_temporal_middle"
    assert table.at[2, "region"] == "Left-Hippocampus"
    assert table.at[7, "region"] == "" and np.isnan(table.at[7, "x"])
    assert any("F3a4" in w for w in reading.warnings)
    # positions: FreeSurfer surface RAS of the conformed volume, metres
    assert table.loc[0, ["x", "y", "z"]].to_numpy(float) == pytest.approx([0.068, 0.008, -0.012])
    assert table.at[0, "frame"] == "mri" and table.at[0, "pos_source"] == "measured"
    assert table.loc[table["name"] == "F3a1", "status"].item() == "bad"
    assert "corrupted_elec.json" in table.loc[table["name"] == "F3a1", "status_reason"].item()
    assert reading.raw.info["sfreq"] == SFREQ and reading.raw.n_times == N_TIMES
    assert not reading.raw.preload
    # microvolts in the file, volts from the raw, any channel subset and time span
    got = reading.raw.get_data(picks=[5, 1], start=100, stop=300)
    np.testing.assert_allclose(got, data[[5, 1], 100:300].astype(np.float64) * 1e-6, rtol=1e-6)


def test_barista_recipe_stores_regions_positions_and_laplacian(treebank, tmp_path):
    root, data = treebank
    summary = preprocess(root, tmp_path / "s.zarr", recipe="barista")
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    assert rec.sfreq == SFREQ
    channels = rec.channels.set_index("name")
    # shaft ends are dropped by the Laplacian, the ventricle contact F3a3 by the region filter,
    # the trigger by the pick; F3a2, whose neighbour F3a1 is corrupted, is kept as bad (masked)
    assert sorted(channels.index) == ["F3a2", "T1b2", "T1b3"]
    assert channels.at["F3a2", "status"] == "bad" and "F3a1" in channels.at["F3a2", "status_reason"]
    assert channels.at["T1b3", "region"] == "Left-Hippocampus"
    assert channels.at["T1b2", "group"] == "T1b"
    assert channels.loc["T1b2", ["x", "y", "z"]].to_numpy(float) == pytest.approx([0.067, 0.007, -0.012])
    # a linear gradient along the shaft vanishes under the Laplacian: what is left is the noise
    stored = rec.signal[:, :]
    rows = [rec.channels["name"].tolist().index(n) for n in ("T1b2", "T1b3")]
    assert np.std(stored[rows]) < 0.05 * np.std(data[1] * 1e-6)


def test_label_file_that_does_not_match_the_trial_is_refused(treebank):
    root, _ = treebank
    (root / "electrode_labels" / "sub_1" / "electrode_labels.json").write_text(json.dumps(LABELS[:-1]))
    with pytest.raises(SidecarError, match=r"sub_1_trial002.h5 holds 9 electrodes but its electrode_labels.json names 8"):
        read_source(discover(root).sources[0])


def test_missing_label_file_names_the_file(treebank):
    root, _ = treebank
    (root / "electrode_labels" / "sub_1" / "electrode_labels.json").unlink()
    with pytest.raises(SidecarError, match=r"electrode_labels/sub_1/electrode_labels.json is missing"):
        read_source(discover(root).sources[0])


def _film_layout(root, data_seconds: int = 90):
    """A longer trial with trigger timings, trial metadata and a film transcript in the dataset's layout.

    Triggers every movie second, the neural clock 1000 samples ahead, trigger 5 s late by 7 samples
    (so a word's sample depends on which trigger is nearest). Eight 3-word sentences, one every 10 s
    from movie second 4; a word without times and one after the last trigger are left out."""
    rng = np.random.default_rng(1)
    n_times = data_seconds * SFREQ
    with h5py.File(root / "all_subject_data" / "sub_1_trial002.h5", "w") as handle:
        group = handle.create_group("data")
        for i in range(len(LABELS)):
            group.create_dataset(f"electrode_{i}", data=(rng.standard_normal(n_times) * 20.0).astype(np.float32))
    movie = np.arange(0.0, data_seconds - 2.0)
    index = 1000 + movie * SFREQ + np.where(movie == 5.0, 7, 0)
    (root / "subject_timings").mkdir()
    pd.DataFrame({"type": "movie", "movie_time": movie, "index": index.astype(int)}).to_csv(
        root / "subject_timings" / "sub_1_trial002_timings.csv", index=False)
    (root / "subject_metadata").mkdir()
    (root / "subject_metadata" / "sub_1_trial002_metadata.json").write_text(
        json.dumps({"title": "A Film", "filename": "a-film"}))
    rows = []
    for k in range(8):
        t = 4.0 + 10.0 * k
        rows += [(t, t + 0.35, 1.0, "We"), (t + 0.4, t + 0.75, 0.0, "go"), (t + 0.8, t + 1.2, 0.0, "home")]
    rows += [(float("nan"), float("nan"), 0.0, "[noise]"), (95.0, 95.3, 1.0, "late")]
    (root / "transcripts" / "a-film").mkdir(parents=True)
    pd.DataFrame(rows, columns=["start", "end", "is_onset", "text"]).to_csv(
        root / "transcripts" / "a-film" / "features.csv")
    return n_times


def test_word_sentence_and_nonspeech_events_from_trigger_timings(treebank):
    from brainfm.preprocessing.braintreebank_events import word_samples

    root, _ = treebank
    n_times = _film_layout(root)
    source = discover(root).sources[0]
    assert {"timings", "metadata", "transcript"} <= set(source.companions)
    assert source.companions["transcript"] in source.files  # a changed transcript re-processes the trial
    events = read_source(source).events
    words = events[events["description"] == "word"]
    assert len(words) == 24 and (events["description"] == "sentence_onset").sum() == 8
    # nearest trigger (spec §4.8): movie 4.8 s is nearest to trigger 5 (7 samples late), 4.4 s to trigger 4
    starts = np.round(words["onset_s"].to_numpy()[:3] * SFREQ).astype(int)
    assert starts.tolist() == [1000 + 4 * SFREQ, round(1000 + 4.4 * SFREQ), round(1000 + 4.8 * SFREQ) + 7]
    triggers = pd.DataFrame({"movie_time": [2.0, 0.0, 1.0], "index": [5000, 10, 2058]})  # any order
    assert word_samples(np.array([0.4, 0.6, 1.5]), triggers, 2048.0).tolist() == [829, 2058 - 819, 2058 + 1024]
    onsets = events.loc[events["description"] == "sentence_onset", "onset_s"].to_numpy()
    np.testing.assert_allclose(onsets, (1000 + (4.0 + 10.0 * np.arange(8)) * SFREQ) / SFREQ)
    # non-speech: 3-s grid chunks touching no word and no 3-s window centred on a word onset
    centres = events.loc[events["description"] == "nonspeech", "onset_s"].to_numpy()
    word_spans = [(s, s + d) for s, d in zip(words["onset_s"], words["duration_s"], strict=True)]
    for c in centres:
        lo, hi = c - 1.5, c + 1.5
        assert all(hi <= a or lo >= b for a, b in word_spans)
        assert all(abs(c - s) >= 3.0 for s, _ in word_spans)
        assert (c - 1.5) % 3.0 == pytest.approx(0.0, abs=1e-9)
    assert len(centres) >= 8 and centres.max() + 1.5 <= n_times / SFREQ
    # broken companions are named
    (root / "transcripts" / "a-film" / "features.csv").write_text("start,stop\n1,2\n")
    with pytest.raises(SidecarError, match=r"features.csv .*lacks the columns \['end', 'is_onset'\]"):
        read_source(discover(root).sources[0])
    (root / "subject_metadata" / "sub_1_trial002_metadata.json").write_text(json.dumps({"filename": "other-film"}))
    with pytest.raises(SidecarError, match="names the film 'other-film', but its transcript .* is missing"):
        read_source(discover(root).sources[0])


@pytest.mark.slow
def test_brain_treebank_decoding_tasks_run_on_the_tiny_layout(treebank, tmp_path, capsys):
    """The shipped sentence-onset and speech tasks cut their windows from the events in the store and run."""
    from importlib.resources import files

    from brainfm.cli.main import main
    from brainfm.downstream.decoding.task import load_task
    from brainfm.downstream.decoding.trials import load_trials

    root, _ = treebank
    _film_layout(root)
    summary = preprocess(root, tmp_path / "store", recipe="barista", dataset="braintreebank")
    assert summary.failed == [], summary.failed
    tasks = files("brainfm.configs") / "downstream"
    counts = {}
    for name, positives in (("braintreebank_sentence_onset", 8), ("braintreebank_speech", 24)):
        task = load_task(tasks / f"{name}.yaml", store=tmp_path / "store")
        trials = load_trials(task)
        counts[name] = np.bincount(trials.y).tolist()
        assert counts[name][1] == positives and trials.sfreq == 2048 and trials.batch.signal.shape[-1] == 6144
    assert counts["braintreebank_sentence_onset"][0] == counts["braintreebank_speech"][0] >= 8
    status = main(["evaluate", "--config", str(tasks / "braintreebank_sentence_onset.yaml"), "--store",
                   str(tmp_path / "store"), "--seeds", "0", "--out", str(tmp_path / "out"), "--json", "-q"])
    assert status == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "braintreebank_sentence_onset" and doc["protocol"] == "within_session"


@pytest.mark.slow
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers")
@pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval")
def test_barista_finetuning_protocol_runs_on_the_tiny_layout(treebank, tmp_path, capsys):
    """BaRISTA's fine-tuning protocol (spec §8) from a checkpoint of ``brainfm pretrain fit``, through
    ``brainfm evaluate`` (the shipped config, fewer epochs) and ``brainfm finetune fit``."""
    import csv
    from importlib.resources import files

    import yaml

    from brainfm.cli.main import main

    root, _ = treebank
    _film_layout(root)
    store = tmp_path / "store"
    assert preprocess(root, store, recipe="barista", dataset="braintreebank").failed == []
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             "--trainer.accelerator", "cpu"]
    assert main(["pretrain", "fit", "--recipe", "barista", "--size", "tiny", "--data.store", str(store),
                 "--data.batch_size", "2", "--data.val_fraction", "0.3", "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                 "--trainer.default_root_dir", str(tmp_path / "pre"), *quiet]) == 0
    (checkpoint,) = (tmp_path / "pre").rglob("*.ckpt")
    capsys.readouterr()
    shipped = files("brainfm.configs") / "downstream" / "braintreebank_sentence_onset_barista.yaml"
    task = yaml.safe_load(shipped.read_text())
    task["models"][0].update(max_epochs=3, patience=3)  # CPU: 3 epochs
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    status = main(["evaluate", "--config", str(tmp_path / "task.yaml"), "--store", str(store), "--checkpoint",
                   str(checkpoint), "--seeds", "0", "--allow-leakage", "--out", str(tmp_path / "out"), "--json", "-q"])
    assert status == 0
    doc = json.loads(capsys.readouterr().out)
    model = doc["models"]["barista_finetune"]
    # the spec's split: 8 sentence onsets and 8 of the speech-free chunks, 80/10/10 -> 14 (12 fit + 2 val) / 2
    (fold,) = model["folds"]
    assert model["kind"] == "brainfm" and fold["fold"].endswith("random 80/10/10")
    assert (fold["n_train"], fold["n_test"]) == (14, 2)
    assert all(0.0 <= fold["auroc"] <= 1.0 for fold in model["folds"])
    assert doc["leakage"]["barista_finetune"]  # pretrained on this very trial: allowed, and reported
    # brainfm finetune fit: the same options as flags; the kept epoch is the validation-AUROC maximum
    run = tmp_path / "run"
    status = main(["finetune", "fit", "--config", str(tmp_path / "task.yaml"), "--data.store", str(store), "--json",
                   "--model.checkpoint", str(checkpoint), "--model.adaptation", "full", "--model.freeze",
                   '["*.temporal_encoder.*", "*.temporal_pooler.*", "*.spatial_embeddings.*"]',
                   "--model.pooling", "weighted", "--model.lrs", "[0.0001]", "--model.head_lr", "0.001",
                   "--model.schedule", "ramp_decay", "--model.select_on", "auroc", "--model.patience", "3",
                   "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(run), "--allow-leakage"])
    assert status == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["select_on"] == "auroc" and [t["lr"] for t in fit["lrs"]] == [0.0001]
    rows = list(csv.DictReader((run / "lightning_logs" / "lr_0.0001" / "metrics.csv").read_text().splitlines()))
    scores = [float(r["val/auroc"]) for r in rows if r.get("val/auroc")]
    assert len(scores) == 3 and fit["val_auroc"] == pytest.approx(max(scores))
    losses = [float(r["val/loss"]) for r in rows if r.get("val/auroc")]
    # the highest validation AUROC, on a tie the lowest validation loss
    best = max(range(len(scores)), key=lambda i: (scores[i], -losses[i]))
    assert fit["epochs"] == 1 + best


@pytest.mark.slow
def test_spec_split_balance_and_overlap_pruning_on_the_tiny_layout(treebank, tmp_path, capsys):
    """BaRISTA's task protocol (spec §4.6-4.7) as task options: overlapping word windows pruned, classes
    balanced by subsampling, one random 80/10/10 split per seed, and the chronological split."""
    from importlib.resources import files

    import yaml

    from brainfm.cli.main import main
    from brainfm.downstream.decoding.protocols import fit_and_validation, make_folds
    from brainfm.downstream.decoding.task import load_task
    from brainfm.downstream.decoding.trials import load_trials
    from brainfm.errors import ConfigError

    root, _ = treebank
    _film_layout(root)
    store = tmp_path / "store"
    assert preprocess(root, store, recipe="barista", dataset="braintreebank").failed == []
    raw = yaml.safe_load((files("brainfm.configs") / "downstream" / "braintreebank_speech.yaml").read_text())
    raw["window"]["prune_overlap"] = ["speech"]
    raw["protocol"] = {"name": "within_session", "split": "random", "fractions": [0.8, 0.1, 0.1],
                       "balance": "subsample", "seeds": [0, 1, 2]}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(raw))
    task = load_task(tmp_path / "task.yaml", store=store)
    trials = load_trials(task)
    size = trials.index.window_size_samples
    # 24 words in 8 sentences of 1.2 s: one 3-s window per sentence survives, and they are disjoint
    positives = np.sort(trials.index.start[trials.y == 1])
    assert len(positives) == 8 and np.diff(positives).min() >= size
    n_nonspeech = int((trials.y == 0).sum())
    assert n_nonspeech > 8  # so that balancing has something to drop
    tests = []
    for seed in task.protocol.seeds:
        (fold,) = make_folds(trials, task.protocol, seed)
        fit, val = fit_and_validation(trials, fold, task.protocol, seed)
        # 8 + 8 trials after balancing; per class 1 test, 1 validation, 6 fitting
        assert (len(fit), len(val), len(fold.test)) == (12, 2, 2) and fold.name.endswith("random 80/10/10")
        for part in (fit, val, fold.test):
            assert np.bincount(trials.y[part]).tolist() == [len(part) // 2] * 2
        assert not (set(fit) | set(val)) & set(fold.test) and not set(fit) & set(val)
        # no window of one part overlaps a window of another
        for a, b in ((fit, val), (fit, fold.test), (val, fold.test)):
            gaps = np.abs(trials.index.start[a][:, None] - trials.index.start[b][None, :])
            assert gaps.min() >= size
        tests.append(tuple(fold.test))
    assert len(set(tests)) > 1  # each seed draws its own subsample and split
    # chronological: in time order the trial ends with speech-free chunks, so 80/10/10 leaves its
    # test part (the last 2 of 19 windows) with one class: refused, naming the parts
    task.protocol.split, task.protocol.balance = "chronological", "none"
    with pytest.raises(ConfigError, match="training, validation and test parts"):
        make_folds(trials, task.protocol, 0)
    task.protocol.fractions = [0.5, 0.25, 0.25]  # 9 / 5 / 5 windows, both classes in each part
    (fold,) = make_folds(trials, task.protocol, 0)
    fit, val = fit_and_validation(trials, fold, task.protocol, 0)
    start = trials.index.start
    assert (len(fit), len(val), len(fold.test)) == (9, 5, 5) and fold.name.endswith("chronological 50/25/25")
    assert start[fit].max() < start[val].min() and start[val].max() < start[fold.test].min()
    assert [f.test.tolist() for f in make_folds(trials, task.protocol, 1)] == [fold.test.tolist()]  # seed-free
    # through brainfm evaluate: one fold per seed, baselines fitted on fitting + validation trials
    raw["protocol"]["seeds"] = [0]
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(raw))
    assert main(["evaluate", "--config", str(tmp_path / "task.yaml"), "--store", str(store), "--out",
                 str(tmp_path / "out"), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["models"]["bandpower_lr"]["folds"]
    assert (row["n_train"], row["n_test"]) == (14, 2) and row["fold"].endswith("random 80/10/10")
    # the options are checked
    raw["protocol"]["name"] = "cross_subject"
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="needs protocol.name within_session"):
        load_task(tmp_path / "task.yaml", store=store)
    raw["protocol"]["name"], raw["protocol"]["fractions"] = "within_session", [0.8, 0.1]
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="three positive shares"):
        load_task(tmp_path / "task.yaml", store=store)
    raw["protocol"]["fractions"], raw["window"]["prune_overlap"] = [0.8, 0.1, 0.1], ["speach"]
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="prune_overlap names \\['speach'\\].*Did you mean 'speech'"):
        load_task(tmp_path / "task.yaml", store=store)
