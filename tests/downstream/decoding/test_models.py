"""brainfm models in evaluate: the leakage guard, zero-shot/probe/LoRA runners on a tiny BrainTokenizer
checkpoint, and the from-scratch networks (connectome-ntf spec §8 checks)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import torch

from brainfm.checkpoint import CHECKPOINT_FORMAT_VERSION, BrainfmCheckpointIO, module_spec
from brainfm.downstream.decoding.eegnet import EEGNet
from brainfm.downstream.decoding.evaluation import evaluate_task
from brainfm.downstream.decoding.functional_layers import (
    FunctionalConv1d,
    FunctionalNet,
    functional_basis,
)
from brainfm.downstream.decoding.leakage import LeakageError
from brainfm.downstream.decoding.lora import LoRALinear, apply_lora
from brainfm.downstream.decoding.models import build_model_runners
from brainfm.downstream.decoding.task import ModelConfig, load_task
from brainfm.downstream.decoding.trials import Trials, load_trials
from brainfm.tokenizers import BrainTokenizer

TASKS = files("brainfm.configs") / "downstream"


def _checkpoint(path, subjects, recordings):
    tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                               sfreq=None)
    state = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}
    checkpoint = {"state_dict": state, "epoch": 0, "global_step": 0,
                  "brainfm": {"format_version": CHECKPOINT_FORMAT_VERSION, "brainfm_version": "test",
                              "tokenizer": module_spec(tokenizer), "backbone": None, "objective": None, "data": None,
                              "training_data": {"subjects": subjects, "recordings": recordings}}}
    BrainfmCheckpointIO().save_checkpoint(checkpoint, path)
    return str(path)


@pytest.fixture(scope="module")
def eegmat_task(eegmat_store):
    task = load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store)
    task.protocol.seeds, task.protocol.n_folds, task.baselines = [0], None, ["bandpower_lr"]
    return task


def test_leakage_guard_refuses_pretrained_subjects_and_allows_override(eegmat_task, tmp_path):
    trials = load_trials(eegmat_task)
    ckpt = _checkpoint(tmp_path / "leaky.ckpt", ["eegmat/01", "other/07"], [])
    eegmat_task.models = [ModelConfig(name="zs", kind="zero_shot", checkpoint=ckpt)]
    with pytest.raises(LeakageError, match=r"subject eegmat/01.*--allow-leakage"):
        build_model_runners(eegmat_task, trials)
    runners, leaked = build_model_runners(eegmat_task, trials, allow_leakage=True)
    assert leaked == {"zs": ["subject eegmat/01"]} and set(runners) == {"zs"}
    ckpt = _checkpoint(tmp_path / "rec.ckpt", ["other/01"], ["eegmat_sub-02_task-1"])
    eegmat_task.models = [ModelConfig(name="zs", kind="zero_shot", checkpoint=ckpt)]
    with pytest.raises(LeakageError, match="recording eegmat_sub-02_task-1"):
        build_model_runners(eegmat_task, trials)


def test_checkpoint_models_run_on_every_fold(eegmat_task, tmp_path):
    trials = load_trials(eegmat_task)
    ckpt = _checkpoint(tmp_path / "clean.ckpt", ["other/01"], ["other_sub-01"])
    eegmat_task.models = [
        ModelConfig(name="zs", kind="zero_shot", checkpoint=ckpt),
        ModelConfig(name="probe", kind="probe", checkpoint=ckpt, head="mlp", pooling="flatten", max_epochs=2, lrs=[1e-3]),
        ModelConfig(name="lora", kind="finetune", adaptation="lora", checkpoint=ckpt, max_epochs=1, lrs=[1e-3]),
        ModelConfig(name="eegnet", kind="scratch", architecture="eegnet", max_epochs=2, lrs=[1e-3]),
    ]
    runners, leaked = build_model_runners(eegmat_task, trials)
    assert not leaked
    result = evaluate_task(eegmat_task, trials, model_runners=runners)
    for name in ("zs", "probe", "lora", "eegnet"):
        assert len(result.models[name].folds) == 3
        assert result.models[name].kind == ("baseline" if name == "eegnet" else "brainfm")
        assert int(result.models[name].confusion.sum()) == len(trials)


def test_lora_starts_as_the_base_model_and_trains_only_its_updates():
    tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1)
    wrapped = apply_lora(tokenizer, rank=2)
    assert wrapped and all(name.rsplit(".", 1)[-1] in ("key", "value", "out") for name in wrapped)
    trainable = {n for n, p in tokenizer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    layer = torch.nn.Linear(6, 3)
    lora = LoRALinear(layer, rank=2)
    x = torch.randn(5, 6)
    torch.testing.assert_close(lora(x), layer(x))  # B starts at zero


def test_functional_kernel_basis_and_template_shapes():
    conv = FunctionalConv1d(3, 5, n_functions=8, resolution=32)
    torch.testing.assert_close(conv.kernel, torch.einsum("rn,ncf->rcf", conv.basis, conv.coefficients))
    assert conv.kernel.shape == (32, 3, 5)
    gram = functional_basis("legendre", 256, 8).T @ functional_basis("legendre", 256, 8)
    diagonal = torch.diag(gram)
    off = (gram - torch.diag(diagonal)).abs()
    assert (off < 0.05 * torch.maximum(diagonal[:, None], diagonal[None])).all()  # each entry vs its rows' diagonal
    net = FunctionalNet(n_chans=4, n_times=256, n_outputs=3)
    assert net(torch.randn(2, 4, 256)).shape == (2, 3)


def test_pooled_functional_convolution_is_shift_invariant():
    conv = FunctionalConv1d(1, 4, n_functions=6, resolution=16, pooling=True)
    signal = torch.zeros(1, 1, 200)
    burst = torch.sin(torch.linspace(0, 12, 40))
    shifted = signal.clone()
    signal[0, 0, 40:80] = burst
    shifted[0, 0, 90:130] = burst
    torch.testing.assert_close(conv(signal), conv(shifted), atol=1e-5, rtol=0)


def test_eegnet_masks_padding_channels():
    net = EEGNet(n_chans=4, n_times=256, n_outputs=2, sfreq=128).eval()
    signal = torch.randn(2, 4, 256)
    mask = torch.tensor([[True, True, True, False]] * 2)
    noisy = signal.clone()
    noisy[:, 3] = 100.0
    torch.testing.assert_close(net(signal, mask), net(noisy, mask))
    assert np.isfinite(net(signal).detach().numpy()).all()


def test_aligned_models_are_built_without_labels(eegmat_task, tmp_path):
    """``align: signal | features`` is computed when the runners are built, from signals and subjects only:
    runners built from trials whose labels cannot be read score exactly as runners built from the real ones."""
    trials = load_trials(eegmat_task)
    ckpt = _checkpoint(tmp_path / "clean.ckpt", ["other/01"], ["other_sub-01"])
    eegmat_task.models = [
        ModelConfig(name="zs", kind="zero_shot", checkpoint=ckpt),
        ModelConfig(name="zs_feat", kind="zero_shot", checkpoint=ckpt, align="features"),
        ModelConfig(name="zs_ea", kind="zero_shot", checkpoint=ckpt, align="signal"),
        ModelConfig(name="probe_feat", kind="probe", checkpoint=ckpt, pooling="flatten", align="features",
                    max_epochs=2, lrs=[1e-3]),
        ModelConfig(name="probe_ea", kind="probe", checkpoint=ckpt, align="signal", max_epochs=2, lrs=[1e-3]),
    ]

    class NoLabels(np.ndarray):
        def __getitem__(self, key):  # type: ignore[no-untyped-def]
            raise AssertionError("a runner read the labels while it was built")

    blind = Trials(trials.batch, trials.y.view(NoLabels), trials.subject, trials.session, trials.run,
                   trials.recording, trials.classes, trials.sfreq, trials.ch_names, trials.sources, trials.index)
    blind_runners, _ = build_model_runners(eegmat_task, blind)
    runners, _ = build_model_runners(eegmat_task, trials)
    blind_result = evaluate_task(eegmat_task, trials, model_runners=blind_runners).to_json()
    result = evaluate_task(eegmat_task, trials, model_runners=runners).to_json()
    assert blind_result == result
    assert {"zs_feat", "zs_ea", "probe_feat", "probe_ea"} <= set(result["models"])


def test_latent_features_are_the_tokenizers_unquantised_latents(eegmat_task, tmp_path):
    """``features: latents`` reads a BrainTokenizer before its quantiser: the latents keep their magnitude
    (the quantised features are built from L2-normalised latents), same (B, N, D) layout."""
    from brainfm.downstream.decoding.backbone import load_backbone
    from brainfm.downstream.decoding.models import frozen_features

    trials = load_trials(eegmat_task)
    ckpt = _checkpoint(tmp_path / "clean.ckpt", ["other/01"], ["other_sub-01"])
    quantised = load_backbone(ckpt)
    latents = quantised.with_source("latents")
    assert latents.model is quantised.model and quantised.with_source("quantised") is quantised
    q, z = frozen_features(quantised, trials), frozen_features(latents, trials)
    assert q.shape == z.shape and not torch.allclose(q, z)
    with torch.no_grad():
        expected, _, _ = quantised.model.tokenizer.encode_latents(trials.take(np.arange(4)))
    torch.testing.assert_close(z[:4], expected.flatten(1, 2))
    norms = z.norm(dim=-1)
    assert float(norms.std()) > 1e-3 * float(norms.mean())  # not unit vectors
    eegmat_task.models = [ModelConfig(name="zs_lat", kind="zero_shot", checkpoint=ckpt, features="latents"),
                          ModelConfig(name="probe_lat", kind="probe", checkpoint=ckpt, features="latents",
                                      max_epochs=1, lrs=[1e-3])]
    runners, _ = build_model_runners(eegmat_task, trials)
    result = evaluate_task(eegmat_task, trials, model_runners=runners)
    assert len(result.models["zs_lat"].folds) == len(result.models["probe_lat"].folds) == 3
