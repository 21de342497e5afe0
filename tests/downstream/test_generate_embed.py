"""``brainfm generate`` and ``brainfm embed`` on tiny checkpoints trained on a real EEG store;
outputs read back with zarr and h5py (no brainfm reader)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainfm.cli.main import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
    pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode"),
]

RECIPE = """\
name: generate-tests
description: eegmat EEG, the first 12 s at 256 Hz.
pick:
  types: [eeg]
crop: {tmin_s: 0.0, tmax_s: 12.0}
steps:
  - resample: {sfreq: 256, method: polyphase}
  - units: {on_implausible: warn}
"""
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu", "--data.val_fraction", "0.34", "--trainer.limit_val_batches", "0"]


@pytest.fixture(scope="module")
def trained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store of three eegmat subjects, a sample tokenizer, a tiny MEG-GPT and a tiny BrainTokenizer."""
    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("generate")
    folder = root / "eegmat"
    folder.mkdir()
    for subject in ("00", "01", "02"):
        shutil.copy(shared_data / "eeg" / "eegmat" / f"Subject{subject}_2.edf", folder)
    (root / "recipe.yaml").write_text(RECIPE)
    store = root / "store"
    summary = preprocess(folder, store, recipe=root / "recipe.yaml", dataset="eegmat",
                         pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)")
    assert summary.failed == []

    def fit(name: str, *args: str) -> Path:
        out = root / name
        assert main(["pretrain", "fit", *args, "--data.store", str(store), "--trainer.default_root_dir", str(out),
                     "--trainer.max_steps", "2", "--data.batch_size", "2", *QUIET]) == 0
        return sorted(out.glob("lightning_logs/version_*/checkpoints/*.ckpt"))[-1]

    tokenizer = fit("tokenizer", "--recipe", "sample_tokenizer", "--model.tokenizer.init_args.n_tokens", "16",
                    "--model.tokenizer.init_args.n_units", "8")
    gpt = fit("gpt", "--recipe", "meg_gpt", "--size", "tiny", "--model.tokenizer.init_args.checkpoint", str(tokenizer),
              "--model.backbone.init_args.d_model", "16", "--model.backbone.init_args.ff_dim", "16")
    brain = fit("brain", "--recipe", "braintokenizer", "--size", "tiny")
    return {"store": store, "gpt": gpt, "brain": brain, "root": root}


def test_embed_meg_gpt_and_a_brain_tokenizer_readable_with_h5py(trained, capsys):
    import h5py

    for name, dim in (("gpt", 16), ("brain", None)):
        out = trained["root"] / f"{name}.h5"
        assert main(["embed", str(trained[name]), str(trained["store"]), str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        with h5py.File(out, "r") as f:
            embeddings = f["embeddings"][:]
            recordings = [r.decode() for r in f["recordings"][:]]
            rec, start = f["window/recording"][:], f["window/start"][:]
            in_training = f["window/in_training"][:]
            attrs = dict(f.attrs)
        assert embeddings.shape == (summary["n_windows"], summary["feature_dim"]) and np.isfinite(embeddings).all()
        if dim is not None:
            assert summary["feature_dim"] == dim
        assert len(recordings) == 3 and set(rec.tolist()) == {0, 1, 2}
        assert (np.diff(start[rec == 0]) == attrs["window_samples"]).all()  # consecutive windows, no overlap
        assert in_training.sum() == (rec != rec[~in_training][0]).sum()  # one subject was held out in training
        assert attrs["checkpoint"] == str(trained[name]) and attrs["sfreq"] == 256.0
        assert np.std(embeddings, axis=0).max() > 0  # windows differ


def test_generate_writes_a_new_store_and_refuses_bad_requests(trained, capsys):
    import zarr

    out = trained["root"] / "generated"
    args = ["generate", str(trained["gpt"]), "--store", str(trained["store"]), "--seconds", "1", "--seed", "3",
            "--no-report", "--json"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["recordings"]) == 3 and summary["seconds"] == 1.0
    group = zarr.open_group(str(out), mode="r")
    signal = group[f"recordings/{summary['recordings'][0]}/signal"][:]
    assert signal.shape == (20, 256) and np.isfinite(signal).all() and signal.std() > 0
    # seeded: the same command gives the same signals; another seed differs
    again = trained["root"] / "again"
    assert main([*args, "--out", str(again)]) == 0
    capsys.readouterr()
    other = zarr.open_group(str(again), mode="r")[f"recordings/{summary['recordings'][0]}/signal"][:]
    assert np.array_equal(signal, other)
    # refusals: the source store itself, a context longer than the model's
    assert main([*args, "--out", str(trained["store"])]) == 2
    assert "never written into the source store" in capsys.readouterr().err
    assert main([*args, "--out", str(trained["root"] / "x"), "--context", "120"]) == 2
    assert "longer than what it reads" in capsys.readouterr().err
    assert main(["generate", str(trained["brain"]), "--store", str(trained["store"]), "--seconds", "1",
                 "--out", str(trained["root"] / "y")]) == 2
    assert "not a generative model" in capsys.readouterr().err
    # a store holding token codes of another tokenizer (here the BrainTokenizer's) is refused
    coded = trained["root"] / "coded_store"
    shutil.copytree(trained["store"], coded)
    assert main(["tokenize", str(trained["brain"]), str(coded), "--name", "brain"]) == 0
    capsys.readouterr()
    assert main(["generate", str(trained["gpt"]), "--store", str(coded), "--seconds", "1", "--no-report",
                 "--out", str(trained["root"] / "z")]) == 2
    assert "made by another tokenizer" in capsys.readouterr().err


def test_generate_with_the_realism_report(trained, capsys):
    pytest.importorskip("brainfm.downstream.generation", reason="the realism report module is not in this build")
    out = trained["root"] / "with_report"
    assert main(["generate", str(trained["gpt"]), "--store", str(trained["store"]), "--seconds", "4",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report" / "realism.json").read_text())
    assert set(report["versus_real"]) == {"meg_gpt", "ar80"}
    assert (out / "report" / "psd.png").is_file() and "realism" in summary
