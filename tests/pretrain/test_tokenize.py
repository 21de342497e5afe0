"""``brainfm tokenize`` and ``brainfm tokenizer report`` on a tiny real store, and cached codes in batches."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from brainfm.checkpoint import load_tokenizer, module_spec, state_digest
from brainfm.cli.main import main
from brainfm.errors import ConfigError
from brainfm.loading import WindowDataModule
from brainfm.pretrain.tokenize import tokenize_store
from brainfm.pretrain.tokenizer_report import evaluate_tokenizer
from brainfm.store.codes import codes_lock
from brainfm.tokenizers import MuLawTokenizer

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu", "--data.batch_size", "4", "--data.val_fraction", "0.34"]
REPORT_KEYS = {"pcc", "nmse", "psd_rel_error", "codebook_usage", "perplexity", "n_windows"}


def _fit(store: Path, root: Path, *args: str) -> Path:
    assert main(["pretrain", "fit", *args, "--data.store", str(store), "--trainer.default_root_dir", str(root),
                 *QUIET]) == 0
    (checkpoint,) = (root / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    return checkpoint


@pytest.fixture(scope="module")
def mulaw_ckpt(tiny_store, tmp_path_factory) -> Path:
    return _fit(tiny_store, tmp_path_factory.mktemp("mulaw"), "--recipe", "mulaw")


@pytest.fixture(scope="module")
def braintokenizer_ckpt(tiny_store, tmp_path_factory) -> Path:
    """A tiny BrainTokenizer after two steps, trained on z-scored 2-s windows (codes need not be good here)."""
    return _fit(tiny_store, tmp_path_factory.mktemp("bt"), "--recipe", "braintokenizer", "--size", "tiny",
                "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--data.normalization", "zscore")


@pytest.fixture
def store(tiny_store, tmp_path) -> Path:
    """A private copy of the tiny store (tokenize writes into it)."""
    return Path(shutil.copytree(tiny_store, tmp_path / "store"))


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_tokenize_writes_codes_that_plain_zarr_reads(mulaw_ckpt, store, capsys):
    import zarr

    assert main(["tokenize", str(mulaw_ckpt), str(store), "--name", "mulaw", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["written"]) == 3 and summary["failed"] == []
    group = zarr.open_group(str(store), mode="r")["recordings"]
    rid = summary["written"][0]
    array = group[rid]["codes"]["mulaw"]
    attrs = array.attrs
    assert attrs["complete"] is True and attrs["kind"] == "sample" and array.dtype == np.int16
    assert array.metadata.dimension_names == ("channel", "time")
    assert attrs["tokenizer"]["class_path"].endswith("MuLawTokenizer") and len(attrs["tokenizer"]["digest"]) == 64
    assert attrs["normalization"] == "zscore" and attrs["covered_samples"] == group[rid].attrs["n_times"]
    # the codes are mu-law of the stored signal z-scored with the stored statistics
    signal, stats = group[rid]["signal"][:], group[rid]["channel_stats"][:]
    good = np.array(group[rid].attrs["channels"]["status"]) == "good"
    expected = MuLawTokenizer().tokenize(torch.from_numpy(((signal - stats[:, :1]) / stats[:, 1:2]).astype(np.float32)))
    codes = array[:]
    assert codes.shape == signal.shape
    assert (codes[good] == expected.numpy()[good]).mean() > 0.9999  # float32 rounding at bin edges
    assert (codes[~good] == 0).all() and (codes[good] >= 1).all()


def test_tokenize_resumes_and_skips_up_to_date_recordings(mulaw_ckpt, store, tmp_path):
    import zarr

    first = tokenize_store(mulaw_ckpt, store, name="mulaw")
    assert len(first.written) == 3
    again = tokenize_store(mulaw_ckpt, store, name="mulaw")
    assert again.written == [] and sorted(again.skipped) == sorted(first.written)
    # an interrupted write (complete: false) is redone, the others are skipped
    rid = first.written[1]
    zarr.open_group(str(store), mode="r+")[f"recordings/{rid}/codes/mulaw"].update_attributes({"complete": False})
    resumed = tokenize_store(mulaw_ckpt, store, name="mulaw")
    assert resumed.written == [rid] and len(resumed.skipped) == 2
    # another tokenizer under the same name is not up to date
    other = _fit(store, tmp_path / "mulaw54", "--recipe", "mulaw", "--model.tokenizer.init_args.n_bins", "54")
    rewritten = tokenize_store(other, store, name="mulaw")
    assert len(rewritten.written) == 3 and rewritten.skipped == []


def test_read_only_store_is_refused_and_left_intact(mulaw_ckpt, store, monkeypatch, capsys):
    before = _tree(store)
    paths = [store, *store.rglob("*")]
    if os.geteuid() == 0:
        # root writes through permissions: make access(2) answer as on a read-only mount instead
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    else:
        for path in paths:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        status = main(["tokenize", str(mulaw_ckpt), str(store)])
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)
    assert status == 2
    err = capsys.readouterr().err
    assert "read-only" in err and "nothing was written" in err and str(store) in err
    assert _tree(store) == before


@pytest.mark.parametrize("normalization", ["sensortype", "window"])
def test_sample_codes_under_a_per_window_normalisation_are_refused(mulaw_ckpt, store, capsys, normalization):
    assert main(["tokenize", str(mulaw_ckpt), str(store), "--normalization", normalization]) == 2
    assert f"{normalization} normalisation scales each window on its own" in capsys.readouterr().err
    assert main(["tokenize", str(mulaw_ckpt), str(store), "--window-s", "2"]) == 2  # zscore codes fit any window
    assert "leave out --window-s/--stride-s" in capsys.readouterr().err


def test_concurrent_tokenize_is_refused_without_writing(mulaw_ckpt, store, capsys):
    before = _tree(store)
    with codes_lock(store, "hold it"):
        assert main(["tokenize", str(mulaw_ckpt), str(store)]) == 2
    assert "being written by another 'brainfm tokenize' run" in capsys.readouterr().err
    assert _tree(store) == before
    assert main(["tokenize", str(mulaw_ckpt), str(store), "-q"]) == 0  # free again once released


def test_cached_sample_codes_equal_on_the_fly_codes(mulaw_ckpt, store):
    tokenize_store(mulaw_ckpt, store, name="mulaw")
    tokenizer, _ = load_tokenizer(mulaw_ckpt)
    data = WindowDataModule(store, window_s=0.7, stride_s=0.3, batch_size=8, codes="mulaw", val_fraction=0.34,
                            shuffle="uniform")
    data.check_codes_tokenizer({**module_spec(tokenizer), "digest": state_digest(tokenizer.state_dict())})
    n = 0
    for split in ("train", "val"):
        for batch in data.make_dataloader(split):
            assert torch.equal(batch.codes, tokenizer.encode(batch))
            n += len(batch)
    assert n == len(data.index)


def test_cached_window_codes_equal_on_the_fly_codes_and_misfits_are_refused(braintokenizer_ckpt, mulaw_ckpt, store):
    summary = tokenize_store(braintokenizer_ckpt, store, name="bt", overlap=0.25)
    assert len(summary.written) == 3
    tokenizer, _ = load_tokenizer(braintokenizer_ckpt)
    # 896 = 512 + 384 samples: two tokenizer windows per batch window, windows every 384 samples
    data = WindowDataModule(store, window_s=896 / 256, stride_s=1.5, batch_size=8, codes="bt", val_fraction=0.34)
    for batch in data.make_dataloader("train"):
        with torch.inference_mode():
            _, expected = tokenizer.tokenize(batch, overlap=0.25)
        assert batch.codes.shape == expected.shape == (len(batch), tokenizer.n_latents, 16, tokenizer.n_levels)
        assert torch.equal(batch.codes, expected)
    with pytest.raises(ConfigError, match=r"do not end on a tokenizer window.*2432 or 2816 samples"):
        WindowDataModule(store, window_s=10.0, stride_s=1.5, codes="bt").setup()
    with pytest.raises(ConfigError, match=r"do not start on the codes' alignment of 384 samples .*at sample 512"):
        WindowDataModule(store, window_s=2.0, codes="bt").setup()
    with pytest.raises(ConfigError, match="made from zscore-normalised signal"):
        WindowDataModule(store, window_s=2.0, stride_s=1.5, normalization="sensortype", codes="bt").setup()
    with pytest.raises(ConfigError, match="have no complete codes named 'nope'.*brainfm tokenize"):
        WindowDataModule(store, window_s=2.0, codes="nope").setup()
    mulaw, _ = load_tokenizer(mulaw_ckpt)
    with pytest.raises(ConfigError, match=r"3 recordings .* another tokenizer than the model's \(class_path"):
        data.check_codes_tokenizer({**module_spec(mulaw), "digest": state_digest(mulaw.state_dict())})
    # one recording re-tokenised by another tokenizer under the same name: refused, naming it
    rid = summary.written[0]
    tokenize_store(mulaw_ckpt, store, name="bt", recordings=[rid])
    with pytest.raises(ConfigError, match=rf"made by different tokenizers or settings: {rid}; .* differ in \['kind'"):
        WindowDataModule(store, window_s=2.0, codes="bt").setup()


def test_report_json_on_held_out_recordings(mulaw_ckpt, tiny_store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["tokenizer", "report", str(mulaw_ckpt), str(tiny_store), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == REPORT_KEYS
    assert report["pcc"]["eeg"] > 0.99 and report["nmse"]["eeg"] < 0.01
    assert set(report["psd_rel_error"]["eeg"]) == {"delta", "theta", "alpha", "beta", "gamma"}
    assert max(report["psd_rel_error"]["eeg"].values()) < 0.05
    assert len(report["codebook_usage"]) == 1 and 0 < report["codebook_usage"][0] <= 1
    assert 1 < report["perplexity"][0] <= 256
    details = json.loads((out / "report.json").read_text())
    _, info = load_tokenizer(mulaw_ckpt)
    assert details["recordings"] and not set(details["recordings"]) & set(info.training_data["recordings"])
    assert report["n_windows"] == 10  # one held-out recording of 20 s in 2-s windows
    assert details["dead_codes"][0] == round(256 * (1 - report["codebook_usage"][0]))
    for name in ("reconstruction.png", "psd.png", "code_usage.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_a_broken_reconstruction_gives_low_pcc(mulaw_ckpt, tiny_store):
    class Broken(MuLawTokenizer):
        """Decodes to noise: the metrics must see it."""

        def detokenize(self, tokens):
            generator = torch.Generator().manual_seed(0)
            return torch.randn(tokens.shape, generator=generator)

    data = WindowDataModule(tiny_store, window_s=2.0, batch_size=8, val_fraction=0.34)
    good_quality, _, _ = evaluate_tokenizer(MuLawTokenizer(), data.make_dataloader("val"), 256.0)
    broken_quality, usage, n = evaluate_tokenizer(Broken(), data.make_dataloader("val"), 256.0)
    assert good_quality.pcc()["eeg"] > 0.99
    assert abs(broken_quality.pcc()["eeg"]) < 0.1 and broken_quality.nmse()["eeg"] > 1.0
    assert n == 10 and usage.usage()[0] > 0


def test_report_refuses_a_store_it_was_trained_on_entirely(mulaw_ckpt, tiny_store, capsys):
    _, info = load_tokenizer(mulaw_ckpt)
    trained = info.training_data["recordings"]
    from brainfm.pretrain.tokenizer_report import report_recordings

    with pytest.raises(ConfigError, match="was in the training split"):
        report_recordings(info, trained, "val")
    assert report_recordings(info, trained, "all") == sorted(trained)
