"""The training engine: one LightningModule, self-describing checkpoints, exact resume, clear refusals."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from brainfm.checkpoint import BrainfmCheckpointIO, load_tokenizer, read_checkpoint
from brainfm.errors import CheckpointError, ConfigError, NonFiniteDataError
from brainfm.loading import WindowDataModule
from brainfm.loading.batch import Batch
from brainfm.nn import DataFacts
from brainfm.pretrain.facts import data_facts
from brainfm.pretrain.module import PretrainModule
from brainfm.tokenizers import MuLawTokenizer, QuantileTokenizer, Tokenizer

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]


class _LinearCodec(Tokenizer):
    """A trainable toy tokenizer: a linear bottleneck with input noise (draws from torch's RNG)."""

    def __init__(self, n_times: int = 256, width: int = 4, noise: float = 0.3) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Linear(n_times, width), nn.Linear(width, n_times)
        self.noise = noise

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.signal
        noisy = x + self.noise * torch.randn_like(x) if self.training else x
        error = (self.decoder(self.encoder(noisy)) - x).pow(2)[batch.channel_mask]
        return {"loss": error.mean()}


def _data(store, **kwargs) -> WindowDataModule:
    kwargs = {"window_s": 2.0, "batch_size": 4, "val_fraction": 0.34, "seed": 3, **kwargs}
    return WindowDataModule(store, **kwargs)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    kwargs = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
              "use_distributed_sampler": False, "accelerator": "cpu", "devices": 1, "default_root_dir": tmp_path,
              "plugins": [BrainfmCheckpointIO()], **kwargs}
    kwargs.setdefault("enable_checkpointing", "callbacks" in kwargs)
    return L.Trainer(**kwargs)


def _adamw(params):
    return torch.optim.AdamW(params, lr=3e-2)


def _steps(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


@pytest.mark.slow
def test_loss_falls_on_a_real_store(tiny_store, tmp_path):
    L.seed_everything(0)
    data = _data(tiny_store)
    facts = data_facts(data.index)
    module = PretrainModule(_LinearCodec(facts.n_times, width=32, noise=0.0), optimizer=_adamw, data_facts=facts)
    batch = next(iter(data.make_dataloader("val")))
    module.eval()
    before = float(module.tokenizer.loss(batch)["loss"].detach())
    module.train()
    _trainer(tmp_path, max_epochs=10, limit_val_batches=0).fit(module, datamodule=data)
    module.eval()
    after = float(module.tokenizer.loss(batch)["loss"].detach())
    assert after < 0.8 * before, (before, after)  # on held-out subjects


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
def test_resume_after_k_steps_matches_an_uninterrupted_run(tiny_store, tmp_path):
    """Weights after 2K steps equal a run resumed from step K: model, optimiser, scheduler,
    sampler position (mid-epoch) and the random state behind the input noise all come back."""

    def module() -> PretrainModule:
        return PretrainModule(_LinearCodec(512), optimizer=_adamw, lr_scheduler=_steps)

    L.seed_everything(11)
    reference = module()
    _trainer(tmp_path / "ref", max_steps=6, max_epochs=-1, limit_val_batches=0).fit(reference, datamodule=_data(tiny_store))

    L.seed_everything(11)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1,
                                                filename="{step}")
    first = module()
    _trainer(tmp_path / "a", max_steps=3, max_epochs=-1, limit_val_batches=0, callbacks=[saver]).fit(
        first, datamodule=_data(tiny_store))
    assert not torch.equal(first.tokenizer.encoder.weight, reference.tokenizer.encoder.weight)

    L.seed_everything(999)  # a different seed: the checkpoint's random state must win
    resumed = module()
    trainer = _trainer(tmp_path / "b", max_steps=6, max_epochs=-1, limit_val_batches=0)
    trainer.fit(resumed, datamodule=_data(tiny_store), ckpt_path=tmp_path / "ckpt" / "step=3.ckpt")
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr() == [3e-2 * 0.5**3]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
@pytest.mark.parametrize("saved_at", ["train_epoch_end", "validation_end", "last_batch"])
def test_resume_from_the_end_of_an_epoch_matches_an_uninterrupted_run(tiny_store, tmp_path, saved_at):
    """A checkpoint written after an epoch's last batch (at the epoch's end, after its
    validation, or by a step count that falls on the last batch) resumes with the next
    epoch's batch order and random state, not a replay of the saved epoch."""
    validate = saved_at == "validation_end"
    limit_val = 1.0 if validate else 0

    def module() -> PretrainModule:
        return PretrainModule(_LinearCodec(512), optimizer=_adamw, lr_scheduler=_steps)

    L.seed_everything(11)
    reference = module()
    _trainer(tmp_path / "ref", max_epochs=2, limit_val_batches=limit_val).fit(reference, datamodule=_data(tiny_store))
    n_batches = len(_data(tiny_store).make_dataloader("train"))

    L.seed_everything(11)
    options = {"train_epoch_end": {"save_on_train_epoch_end": True},
               "validation_end": {"monitor": "val/loss", "save_on_train_epoch_end": False},
               "last_batch": {"every_n_train_steps": n_batches}}[saved_at]
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="saved", **options)
    first = module()
    _trainer(tmp_path / "a", max_epochs=1, limit_val_batches=limit_val, callbacks=[saver]).fit(
        first, datamodule=_data(tiny_store))

    L.seed_everything(999)
    resumed = module()
    _trainer(tmp_path / "b", max_epochs=2, limit_val_batches=limit_val).fit(
        resumed, datamodule=_data(tiny_store), ckpt_path=tmp_path / "ckpt" / "saved.ckpt")
    differ = [name for name, value in reference.state_dict().items() if not torch.equal(value, resumed.state_dict()[name])]
    assert not differ, differ


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
def test_resuming_with_another_tokenizer_is_refused(tiny_store, tmp_path):
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    _trainer(tmp_path, callbacks=[saver], limit_val_batches=0).fit(
        PretrainModule(QuantileTokenizer(n_bins=16)), datamodule=_data(tiny_store))
    with pytest.raises(CheckpointError, match="tokenizer is 'brainfm.tokenizers.quantile.QuantileTokenizer', this run's is 'brainfm.tokenizers.mulaw.MuLawTokenizer'"):
        _trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(
            PretrainModule(MuLawTokenizer()), datamodule=_data(tiny_store), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    with pytest.raises(CheckpointError, match="n_bins: checkpoint 16, now 32"):
        _trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(
            PretrainModule(QuantileTokenizer(n_bins=32)), datamodule=_data(tiny_store), ckpt_path=tmp_path / "ckpt" / "last.ckpt")


@pytest.mark.slow
def test_checkpoint_records_the_training_data(tiny_store, tmp_path):
    data = _data(tiny_store)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    module = PretrainModule(QuantileTokenizer(n_bins=64), data_facts=data_facts(data.index))
    _trainer(tmp_path, callbacks=[saver]).fit(module, datamodule=data)
    tokenizer, info = load_tokenizer(tmp_path / "ckpt" / "last.ckpt")
    train = data.split("train")
    trained_on = sorted({train.layouts[int(r)].recording_id for r in train.recording})
    assert info.training_data["recordings"] == trained_on and len(trained_on) == 2
    assert info.training_data["subjects"] == sorted({f"eegmat/{r.split('-')[1][:2]}" for r in trained_on})
    assert info.training_data["store_format_version"] == 1
    sources = info.training_data["sources"]  # the leakage guard matches recordings by their source file too
    assert sorted(sources) == trained_on and all(len(h) == 64 and h != "0" * 64 for h in sources.values())
    assert list(info.training_data["preprocessing"]) == ["engine-tests"]
    assert info.data.sfreq == 256.0 and info.data.n_times == 512 and info.data.sensor_types == ["eeg"]
    # the fitted bins came back: counted every good training sample once
    good = sum(int(train.layouts[int(r)].good.sum()) for r in train.recording)
    assert float(tokenizer.counts.sum()) == good * 512
    assert read_checkpoint(tmp_path / "ckpt" / "last.ckpt")["brainfm"]["rng"]["torch"].dtype == torch.uint8


def test_unsupported_sensor_types_are_refused_before_training():
    class EegOnly(MuLawTokenizer):
        sensor_types = ("eeg",)

    facts = DataFacts(sfreq=160.0, n_times=320, sensor_types=["eeg", "mag"], recording_types={"erm": ["eeg", "mag"]})
    with pytest.raises(ConfigError, match=r"\['mag'\] channels in 1 recordings \(erm\)"):
        PretrainModule(EegOnly(), data_facts=facts)


def test_non_finite_windows_and_losses_stop_the_run_naming_recording_and_sample():
    signal = torch.zeros(2, 3, 10)
    signal[1, 2, 4] = float("nan")
    batch = Batch(signal=signal, channel_mask=torch.ones(2, 3, dtype=torch.bool), sensor_pos=torch.zeros(2, 3, 6),
                  sensor_type=torch.zeros(2, 3, dtype=torch.long), pos_mask=torch.ones(2, 3, dtype=torch.bool),
                  frame_ids=torch.zeros(2, 3, dtype=torch.long), channel_ids=torch.ones(2, 3, dtype=torch.long),
                  region_ids=torch.zeros(2, 3, dtype=torch.long), subject_ids=torch.zeros(2, dtype=torch.long),
                  recording_ids=torch.tensor([0, 5]), start=torch.tensor([0, 1280]))
    module = PretrainModule(MuLawTokenizer())
    with pytest.raises(NonFiniteDataError, match="recording id 5' from sample 1280"):
        module.training_step(batch, 0)

    class Exploding(_LinearCodec):
        def loss(self, batch):
            return {"loss": torch.tensor(float("inf"))}

    batch.signal[1, 2, 4] = 0.0
    with pytest.raises(NonFiniteDataError, match="loss became inf on the batch of 'recording id 0' from sample 0"):
        PretrainModule(Exploding(10)).validation_step(batch, 0)


@pytest.mark.filterwarnings("ignore:.*ModelCheckpoint.*")
def test_sample_tokenizer_checkpoints_hold_the_refactored_vocabulary_and_temperature_anneals(tiny_store, tmp_path):
    """MEG-GPT §4.3: at the end of fitting the vocabulary is refactored from the training data (label 0 reserved);
    §4.2: tau = 1 - e / (E - 1) per epoch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from brainfm.tokenizers import SampleLevelTokenizer

    L.seed_everything(0)
    data = _data(tiny_store, window_s=0.8, batch_size=8)
    facts = data_facts(data.index)
    tokenizer = SampleLevelTokenizer(n_tokens=16, n_units=8)
    seen: list[float] = []

    class _Tau(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:
                seen.append(float(module.tokenizer.temperature))

    module = PretrainModule(tokenizer, optimizer=_adamw, data_facts=facts)
    checkpoints = tmp_path / "ckpt"
    _trainer(tmp_path, max_epochs=3, limit_train_batches=3, limit_val_batches=0,
             callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True), _Tau()]).fit(module, datamodule=data)
    assert seen == [1.0, 0.5, 0.0]
    loaded, _ = load_tokenizer(checkpoints / "last.ckpt")
    # the saved vocabulary is the refactoring of the full training split's counts under the saved weights
    loaded.eval()
    counts = sum(loaded.count_tokens_of(b) for b in data.make_dataloader("train", shuffle=False))
    kept = int((counts > 0).sum())
    assert loaded.vocab_size == kept + 1 <= 17
    order = torch.argsort(-counts.double(), stable=True)[:kept]
    assert torch.equal(loaded.labels[order], torch.arange(1, kept + 1))
    assert bool((loaded.labels[counts == 0] == 0).all())
    batch = next(iter(data.make_dataloader("train", shuffle=False)))
    assert int(loaded.tokenize(batch.signal)[batch.channel_mask].min()) >= 1  # label 0 never on training data


@pytest.mark.slow
def test_final_checkpoint_is_the_last_ckpt_of_a_save_last_callback_that_never_saved(tiny_store, tmp_path):
    """With ``save_last`` and no save before the end, the final checkpoint is ``last.ckpt``: one file,
    not a second copy of the step written by the callback's own end-of-training save."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from brainfm.pretrain.final_checkpoint import FinalCheckpoint

    final = FinalCheckpoint()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=100)
    module = PretrainModule(_LinearCodec(512), optimizer=_adamw)
    _trainer(tmp_path, max_steps=3, max_epochs=-1, limit_val_batches=0, callbacks=[final, saver]).fit(
        module, datamodule=_data(tiny_store))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.ckpt"]
    assert final.final_path == tmp_path / "ckpt" / "last.ckpt"
    checkpoint = read_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert checkpoint["global_step"] == 3 and checkpoint["optimizer_states"]  # a full checkpoint, resumable
    for name, value in module.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][name]), name


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
@pytest.mark.parametrize("validate", [False, True], ids=["no_validation", "validation_every_2_steps"])
def test_resume_inside_the_quantizer_warmup_and_after_the_kmeans_step_matches_an_uninterrupted_run(
        tiny_store, tmp_path, validate):
    """BrainTokenizer with ``quantizer_warmup=3``: steps 0-2 bypass the quantiser, step 3 fits the
    codebooks by k-means. Checkpoints written during the warm-up (steps 1 and 3) and right after the
    k-means step (step 4) resume to the uninterrupted run's weights and codebooks at step 8
    (the run crosses an epoch: 5 batches each), with or without validation (evaluation mode bypasses the
    quantiser until it is fitted) between the steps."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from brainfm.tokenizers import BrainTokenizer

    loops = {"val_check_interval": 2, "check_val_every_n_epoch": None} if validate else {"limit_val_batches": 0}

    def module() -> PretrainModule:
        tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                                   kmeans_samples=1024, quantizer_warmup=3)
        return PretrainModule(tokenizer, optimizer=_adamw, lr_scheduler=_steps)

    L.seed_everything(5)
    reference = module()
    _trainer(tmp_path / "ref", max_steps=8, max_epochs=-1, **loops).fit(reference, datamodule=_data(tiny_store))
    assert bool(reference.tokenizer.quantizer.layers[0].initted)
    if validate:  # validation draws from the global generators, but training's draws stay those of a run without it
        L.seed_everything(5)
        unvalidated = module()
        _trainer(tmp_path / "noval", max_steps=8, max_epochs=-1, limit_val_batches=0).fit(
            unvalidated, datamodule=_data(tiny_store))
        for name, value in reference.state_dict().items():
            assert torch.equal(value, unvalidated.state_dict()[name]), name

    L.seed_everything(5)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    first = module()
    _trainer(tmp_path / "a", max_steps=4, max_epochs=-1, **loops, callbacks=[saver]).fit(
        first, datamodule=_data(tiny_store))
    states = {step: read_checkpoint(tmp_path / "ckpt" / f"step={step}.ckpt")["state_dict"] for step in (1, 3, 4)}
    assert not bool(states[3]["tokenizer.quantizer.layers.0.initted"])  # saved inside the warm-up
    assert bool(states[4]["tokenizer.quantizer.layers.0.initted"])  # saved right after the k-means step

    for step in (1, 3, 4):
        L.seed_everything(999)  # another seed: the checkpoint's random state must win
        resumed = module()
        _trainer(tmp_path / f"b{step}", max_steps=8, max_epochs=-1, **loops).fit(
            resumed, datamodule=_data(tiny_store), ckpt_path=tmp_path / "ckpt" / f"step={step}.ckpt")
        differ = [name for name, value in reference.state_dict().items() if not torch.equal(value, resumed.state_dict()[name])]
        assert not differ, (step, differ)


class _StopAfter(L.Callback):
    """Sets ``trainer.should_stop`` after a step, as ``max_time`` or early stopping do."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["max_epochs_before_validation", "should_stop"])
def test_final_checkpoint_when_the_fit_ends_by_epochs_or_a_stop_signal(tiny_store, tmp_path, stop):
    """The other ways a fit ends without Lightning's checkpoint: ``max_epochs`` reached before the
    epoch ``check_val_every_n_epoch`` asks to validate, and ``should_stop`` (``max_time``) in an epoch
    that does not validate (Lightning validates on a stop only in epochs that validate anyway)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from brainfm.pretrain.final_checkpoint import FinalCheckpoint

    options = ({"max_epochs": 1, "check_val_every_n_epoch": 2} if stop == "max_epochs_before_validation" else
               {"max_epochs": 3, "check_val_every_n_epoch": 2, "callbacks": [_StopAfter(2)]})
    callbacks = [*options.pop("callbacks", []), ModelCheckpoint(dirpath=tmp_path / "ckpt"), FinalCheckpoint()]
    module = PretrainModule(_LinearCodec(512), optimizer=_adamw)
    _trainer(tmp_path, callbacks=callbacks, **options).fit(module, datamodule=_data(tiny_store))
    expected = "epoch=0-step=5.ckpt" if stop == "max_epochs_before_validation" else "epoch=0-step=2.ckpt"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [expected]
    checkpoint = read_checkpoint(tmp_path / "ckpt" / expected)
    for name, value in module.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][name]), name
