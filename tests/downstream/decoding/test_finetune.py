"""``brainfm finetune fit|test`` on a real eegmat store with a tiny BrainTokenizer checkpoint; the saved model;
the leakage guard by source hash."""

from __future__ import annotations

import csv
import json
from importlib.resources import files

import numpy as np
import pytest
import torch

from brainfm.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    BrainfmCheckpointIO,
    load_model,
    module_spec,
    read_checkpoint,
)
from brainfm.cli.main import main
from brainfm.downstream.decoding.finetune_module import FinetuneModule
from brainfm.downstream.decoding.finetuned_checkpoint import load_finetuned, save_finetuned
from brainfm.downstream.decoding.leakage import LeakageError, check_leakage
from brainfm.downstream.decoding.lora import ATTENTION_NAMES, LoRALinear, apply_lora, merge_lora
from brainfm.downstream.decoding.trial_datamodule import TrialDataModule
from brainfm.tokenizers import BrainTokenizer

TASK = str(files("brainfm.configs") / "downstream" / "eegmat_arithmetic.yaml")
PRETRAINED_ON = {"subjects": ["other/01"], "recordings": ["other_sub-01"], "sources": {"other_sub-01": "ab" * 32}}


def _tokenizer_checkpoint(path, training_data, batch):
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                                   sfreq=None, kmeans_samples=256)
        tokenizer.train()
        tokenizer.loss(batch)  # fits the codebooks (k-means on the first batch): features are no longer zeros
    checkpoint = {"state_dict": {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}, "epoch": 0,
                  "global_step": 0,
                  "brainfm": {"format_version": CHECKPOINT_FORMAT_VERSION, "brainfm_version": "test",
                              "tokenizer": module_spec(tokenizer), "backbone": None, "objective": None, "data": None,
                              "training_data": training_data}}
    BrainfmCheckpointIO().save_checkpoint(checkpoint, path)
    return str(path)


@pytest.fixture(scope="module")
def pretrained(eegmat_store, tmp_path_factory):
    trials = TrialDataModule(TASK, store=str(eegmat_store)).trials
    return _tokenizer_checkpoint(tmp_path_factory.mktemp("pre") / "tok.ckpt", PRETRAINED_ON,
                                 trials.take(np.arange(0, len(trials), 3)))


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_fit_then_test_from_the_cli(eegmat_store, pretrained, tmp_path, capsys):
    run = tmp_path / "run"
    status = main(["finetune", "fit", "--config", TASK, "--data.store", str(eegmat_store), "--json",
                   "--model.checkpoint", pretrained, "--model.adaptation", "lora", "--model.lrs", "[0.001, 0.01]",
                   "--model.patience", "1", "--trainer.max_epochs", "4", "--trainer.default_root_dir", str(run)])
    assert status == 0
    fit = _json(capsys)
    # the learning rate and the epoch were chosen on validation: the kept one has the best validation score
    assert [t["lr"] for t in fit["lrs"]] == [0.001, 0.01]
    assert fit["val_balanced_accuracy"] == max(t["val_balanced_accuracy"] for t in fit["lrs"])
    for tried in fit["lrs"]:
        assert 1 <= tried["epoch"] <= tried["epochs_run"] <= min(4, tried["epoch"] + 1)  # patience 1
        log = run / "lightning_logs" / f"lr_{tried['lr']:g}" / "metrics.csv"
        rows = list(csv.DictReader(log.read_text().splitlines()))
        scores = [float(r["val/balanced_accuracy"]) for r in rows if r.get("val/balanced_accuracy")]
        assert scores and max(scores) == pytest.approx(tried["val_balanced_accuracy"])
    assert (run / "config.yaml").read_text().count("eegmat_arithmetic.yaml") >= 1
    # a brainfm checkpoint: verified, with every subject the weights have seen and never the test subject
    meta = read_checkpoint(fit["checkpoint"])["brainfm"]
    split = meta["finetune"]["split"]
    assert split["test_subjects"] == ["eegmat/00"] and fit["n_test"] == 12
    seen = meta["training_data"]
    assert set(seen["subjects"]) == {"other/01", *split["fit_subjects"], *split["val_subjects"]}
    assert "eegmat/00" not in seen["subjects"] and seen["pretraining"]["subjects"] == ["other/01"]
    assert all(len(h) == 64 for h in seen["sources"].values()) and "other_sub-01" in seen["sources"]
    # the fine-tuned backbone loads as any pretrained model; LoRA (merged) changed its attention projections only
    tuned, original = load_model(fit["checkpoint"]).state_dict(), load_model(pretrained).state_dict()
    changed = {k.rsplit(".", 1)[0] for k in tuned if not torch.equal(tuned[k], original[k])}
    assert changed and all(ATTENTION_NAMES.search(name) for name in changed), changed
    data = TrialDataModule(TASK, store=str(eegmat_store))

    status = main(["finetune", "test", "--checkpoint", fit["checkpoint"], "--json"])
    assert status == 0
    test = _json(capsys)
    assert set(test) >= {"task", "protocol", "models", "leakage", "files"} and test["leakage"] == {}
    (name, model), = test["models"].items()
    assert name == "lora_linear_mean" and model["kind"] == "brainfm"
    assert set(model) == {"kind", "balanced_accuracy", "kappa", "macro_f1", "auroc", "folds"}
    assert model["folds"][0]["n_test"] == 12 and model["folds"][0]["fold"] == "subject eegmat/00"
    # the saved model gives what test reported
    module, _ = load_finetuned(fit["checkpoint"])
    with torch.no_grad():
        predicted = module(data.trials.take(data.rows("test"))).argmax(1).numpy()
    accuracy = np.mean([np.mean(predicted[data.trials.y[data.rows("test")] == k] == k) for k in (0, 1)])
    assert model["balanced_accuracy"]["mean"] == pytest.approx(accuracy)
    # another fold tests subjects the model was fine-tuned on: the leakage guard refuses
    assert main(["finetune", "test", "--checkpoint", fit["checkpoint"], "--data.fold", "1"]) == 2
    assert "was trained on data this evaluation tests: subject eegmat/01" in capsys.readouterr().err


def test_scratch_network_and_typos(eegmat_store, tmp_path, capsys):
    run = tmp_path / "scratch"
    assert main(["finetune", "fit", "--config", TASK, "--data.store", str(eegmat_store), "--model.architecture",
                 "eegnet", "--model.lrs", "[0.001]", "--trainer.max_epochs", "1", "--trainer.default_root_dir",
                 str(run), "--json"]) == 0
    fit = _json(capsys)
    assert main(["finetune", "test", "--checkpoint", fit["checkpoint"], "--json"]) == 0
    assert "eegnet" in _json(capsys)["models"]
    # the saved config reproduces the run (same split, seed and validation scores)
    assert main(["finetune", "fit", "--config", str(run / "config.yaml"), "--trainer.default_root_dir",
                 str(tmp_path / "again"), "--json"]) == 0
    again = _json(capsys)
    assert again["lrs"] == fit["lrs"] and again["fold"] == fit["fold"] == "subject eegmat/00"
    with pytest.raises(SystemExit) as exit_info:  # jsonargparse: misspelt key, usage error
        main(["finetune", "fit", "--config", TASK, "--model.adaptaton", "lora"])
    assert exit_info.value.code == 2
    assert main(["finetune", "fit", "--config", TASK, "--data.store", str(eegmat_store), "--data.fold", "9",
                 "--model.architecture", "eegnet"]) == 2
    assert "data.fold 9 does not exist" in capsys.readouterr().err
    assert main(["finetune", "test", "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2


def test_saved_model_equals_the_trained_one(eegmat_store, pretrained, tmp_path):
    data = TrialDataModule(TASK, store=str(eegmat_store))
    for adaptation, head, pooling in (("lora", "mlp", "flatten"), ("full", "linear", "mean")):
        module = FinetuneModule(checkpoint=pretrained, adaptation=adaptation, head=head, pooling=pooling,
                                trial_facts=data.trial_facts)
        module.build(data.trials.take(np.arange(2)))
        with torch.no_grad():  # stand-in for training: move every trainable weight (LoRA's B starts at zero)
            generator = torch.Generator().manual_seed(1)
            for p in module.net.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=generator))
        path = save_finetuned(tmp_path / f"{adaptation}.ckpt", module, data, {"lr": 1e-3, "epochs": 1})
        loaded, meta = load_finetuned(path)
        batch = data.trials.take(np.arange(6))
        module.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(batch), module(batch), atol=1e-4, rtol=1e-4)
        assert meta["finetune"]["adaptation"] == adaptation and meta["training_data"]["pretraining"]["subjects"]
    probe = FinetuneModule(checkpoint=pretrained, head="mlp", trial_facts=data.trial_facts)
    probe.build(data.trials.take(np.arange(2)))
    probe.eval()
    batch = data.trials.take(np.arange(3, 9))
    with torch.no_grad():
        direct = probe(batch)
        probe.cache_features(data.trials)  # a probe's cached features give what the backbone gives
        torch.testing.assert_close(probe(batch), direct)


def test_merged_lora_computes_the_same_function():
    model = torch.nn.Module()
    model.attn = torch.nn.Module()
    model.attn.qkv = torch.nn.Linear(6, 5)
    assert apply_lora(model, rank=2) == ["attn.qkv"]
    with torch.no_grad():
        model.attn.qkv.lora_b.normal_()
    x = torch.randn(3, 6)
    expected = model.attn.qkv(x)
    assert merge_lora(model) == ["attn.qkv"]
    assert not isinstance(model.attn.qkv, LoRALinear)
    torch.testing.assert_close(model.attn.qkv(x), expected)


def test_leakage_guard_matches_recordings_by_source_hash(eegmat_store):
    from brainfm.loading.datamodule import WindowDataModule
    from brainfm.pretrain.facts import training_record

    record = training_record(WindowDataModule(str(eegmat_store), window_s=4.0))
    assert set(record["sources"]) == set(record["recordings"])
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in record["sources"].values())
    trials = TrialDataModule(TASK, store=str(eegmat_store)).trials
    one = trials.recording[0]
    # the same source file under another id (another store, another pattern) is still found
    renamed = {"subjects": ["elsewhere/99"], "recordings": ["renamed"], "sources": {"renamed": trials.sources[one]}}
    with pytest.raises(LeakageError, match=f"recording {one}"):
        check_leakage(renamed, trials)
    assert check_leakage({"sources": {"renamed": "0" * 64, "empty": ""}}, trials) == []


def test_lora_finds_the_shared_attention_projections():
    from brainfm.nn.attention import SelfAttention

    block = torch.nn.Module()
    block.attn = SelfAttention(16, 4)  # BaRISTA's (and every brainfm transformer's) attention
    assert sorted(apply_lora(block, rank=2)) == ["attn.o_proj", "attn.qkv_proj"]
