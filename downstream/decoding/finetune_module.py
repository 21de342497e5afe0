"""``FinetuneModule``: the LightningModule of ``brainfm finetune`` (probes, full fine-tuning, LoRA, scratch).

The network is one of:

- a pretrained checkpoint's ``features(batch)`` (:func:`~brainfm.downstream.decoding.backbone.load_backbone`,
  any model ``brainfm.checkpoint.load_model`` reads) with a head parametrised by pooling
  (:class:`~brainfm.downstream.decoding.heads.ClassificationHead`), the backbone ``frozen``
  (linear or MLP probe), trained in ``full``, or adapted by ``lora``
  (:class:`~brainfm.downstream.decoding.classifier.BackboneClassifier`);
- the same checkpoint's architecture with fresh weights (``from_scratch: true``), the baseline that
  says what pretraining brought;
- a from-scratch signal network (``architecture: eegnet | functional``).

Training uses AdamW and class-weighted cross-entropy (the metric is balanced accuracy), the
head optionally at its own learning rate (``head_lr``) under a per-epoch ``schedule``; after
every epoch the validation balanced accuracy, (binary tasks) AUROC and class-weighted
cross-entropy are logged as ``val/balanced_accuracy``, ``val/auroc`` and ``val/loss``; the best
epoch's weights are kept (:class:`BestWeights`: the higher ``select_on`` metric, ties to the
lower loss, :class:`~brainfm.downstream.decoding.training.ValidationScore`) and training stops
after ``patience`` epochs without a higher ``select_on`` metric. A frozen backbone's features are computed once per trial and cached. ``brainfm finetune fit`` trains one copy per learning rate in ``lrs`` and
keeps the best on validation; the test trials are never seen while fitting.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from brainfm.downstream.decoding.backbone import FeatureBackbone, load_backbone
from brainfm.downstream.decoding.classifier import BackboneClassifier
from brainfm.downstream.decoding.eegnet import EEGNet
from brainfm.downstream.decoding.functional_layers import FunctionalNet
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.metrics import score_predictions
from brainfm.downstream.decoding.models import frozen_features
from brainfm.downstream.decoding.optim import SCHEDULES, parameter_groups, schedule_lambda
from brainfm.downstream.decoding.training import ValidationScore, seeded, selection_metric
from brainfm.downstream.decoding.trial_datamodule import TrialFacts
from brainfm.downstream.decoding.trials import Trials
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch

__all__ = ["BestWeights", "FinetuneModule", "fresh_backbone"]


def fresh_backbone(backbone: FeatureBackbone) -> FeatureBackbone:
    """The same architecture as a loaded checkpoint, with new random weights and no training record.

    Parameters
    ----------
    backbone : FeatureBackbone
        A loaded checkpoint.

    Returns
    -------
    fresh : FeatureBackbone
        Its tokenizer and backbone rebuilt from their configs (the pretraining objective is left out).
    """
    from brainfm.checkpoint import CheckpointInfo, PretrainedModel, build_module
    from brainfm.models.base import Backbone
    from brainfm.tokenizers.base import Tokenizer

    info = backbone.info
    where = f"{info.path} (from scratch)"
    tokenizer = build_module(info.tokenizer, Tokenizer, where) if info.tokenizer else None
    net = build_module(info.backbone, Backbone, where) if info.backbone else None
    blank = CheckpointInfo(path=where, brainfm_version=info.brainfm_version, tokenizer=dict(info.tokenizer),
                           data=info.data, backbone=dict(info.backbone))
    return FeatureBackbone(PretrainedModel(tokenizer, net, None, blank).eval(), blank)


class BestWeights(Callback):
    """Keep the weights of the best validation epoch, stop after ``patience`` epochs without progress; restore at the end.

    Best is :meth:`~brainfm.downstream.decoding.training.ValidationScore.better_than`: the
    higher selected metric (``val/balanced_accuracy`` or ``val/auroc``), on a tie the lower
    ``val/loss``. Patience counts epochs without a higher selected metric (a falling loss alone
    does not prolong training).

    Parameters
    ----------
    patience : int
        Validation epochs without a higher selected metric before training stops.
    select_on : "balanced_accuracy" | "auroc"
        The selected metric, logged as ``val/<select_on>``; an undefined value (NaN) counts as 0.
    """

    def __init__(self, patience: int, select_on: str = "balanced_accuracy") -> None:
        super().__init__()
        self.patience = int(patience)
        self.select_on = select_on
        self.stale = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember the weights when the validation score improved; stop when it has not for ``patience`` epochs."""
        monitor = f"val/{self.select_on}"
        if trainer.sanity_checking or monitor not in trainer.callback_metrics:
            return
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        score = ValidationScore(selection_metric({self.select_on: metrics[monitor]}, self.select_on),
                                metrics.get("val/loss", float("nan")))
        best = pl_module.best
        self.stale = 0 if best is None or score.value > best.value else self.stale + 1  # type: ignore[attr-defined]
        if score.better_than(best):  # type: ignore[arg-type]
            pl_module.best = score
            pl_module.best_score = score.value
            pl_module.best_epoch = trainer.current_epoch + 1
            pl_module.best_state = copy.deepcopy(pl_module.net.state_dict())  # type: ignore[union-attr]
        if self.stale >= self.patience:
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Load the best epoch's weights."""
        if pl_module.best_state is not None:
            pl_module.net.load_state_dict(pl_module.best_state)  # type: ignore[union-attr]


class FinetuneModule(L.LightningModule):
    """A classifier on a pretrained checkpoint (or from scratch), trained on a task's trials.

    Parameters
    ----------
    checkpoint : str | None
        A brainfm checkpoint (``brainfm pretrain fit``, or a fine-tuned one); None with ``architecture``.
    adaptation : "frozen" | "full" | "lora"
        frozen: a probe (only the head trains); full: every weight; lora: LoRA on the attention projections.
    head : "linear" | "mlp"
        Classification head on the features.
    pooling : "mean" | "cls" | "flatten" | "weighted"
        How the (B, N, D) features become one vector (``weighted``: a learned weight per token,
        BaRISTA's readout).
    lora_rank : int
        Rank of the LoRA updates.
    from_scratch : bool
        Train the checkpoint's architecture from random weights (a baseline for what pretraining brings).
    architecture : "eegnet" | "functional" | None
        A from-scratch signal network instead of a checkpoint.
    lrs : list of float
        Learning rates tried by ``brainfm finetune fit``; the best on validation is kept.
    weight_decay : float
        AdamW weight decay.
    patience : int
        Stop after this many epochs without a higher validation ``select_on`` metric.
    head_lr : float | None
        Learning rate of the head while the backbone trains at ``lrs`` (None: the same).
    schedule : "constant" | "ramp_decay"
        Per-epoch learning-rate factor (:func:`~brainfm.downstream.decoding.optim.epoch_factor`).
    select_on : "balanced_accuracy" | "auroc"
        Validation metric that picks the epoch and the learning rate (a tie goes to the lower
        class-weighted validation loss) and drives early stopping.
    freeze : list of str | None
        With ``adaptation: full``: fnmatch patterns on the backbone's parameter names kept frozen.
    seed : int
        Seed of the head's (and LoRA's, or the scratch network's) initialisation.
    trial_facts : TrialFacts | None
        Classes, channels, samples and sampling rate, linked from the data module.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        adaptation: Literal["frozen", "full", "lora"] = "frozen",
        head: Literal["linear", "mlp"] = "linear",
        pooling: Literal["mean", "cls", "flatten", "weighted"] = "mean",
        lora_rank: int = 4,
        from_scratch: bool = False,
        architecture: Literal["eegnet", "functional"] | None = None,
        lrs: list[float] | None = None,
        weight_decay: float = 0.01,
        patience: int = 5,
        head_lr: float | None = None,
        schedule: Literal["constant", "ramp_decay"] = "constant",
        select_on: Literal["balanced_accuracy", "auroc"] = "balanced_accuracy",
        freeze: list[str] | None = None,
        seed: int = 0,
        trial_facts: TrialFacts | None = None,
    ) -> None:
        super().__init__()
        if (checkpoint is None) == (architecture is None):
            raise ConfigError("Give exactly one of model.checkpoint (a brainfm checkpoint to fine-tune) and "
                              "model.architecture (eegnet or functional, trained from scratch).")
        if architecture is not None and (from_scratch or adaptation != "frozen"):
            raise ConfigError("model.architecture trains a signal network from scratch: leave model.adaptation "
                              "and model.from_scratch unset.")
        if from_scratch and adaptation != "full":
            raise ConfigError("model.from_scratch trains every weight of a fresh network: use model.adaptation full.")
        self.lrs = [1e-3, 3e-4] if lrs is None else [float(lr) for lr in lrs]
        if not self.lrs or min(self.lrs) <= 0:
            raise ConfigError(f"model.lrs needs positive learning rates, got {lrs}.")
        if patience < 1:
            raise ConfigError(f"model.patience must be at least 1, got {patience}.")
        if freeze and adaptation != "full":
            raise ConfigError(f"model.freeze applies to model.adaptation full, not {adaptation!r}.")
        if schedule not in SCHEDULES:
            raise ConfigError(f"Invalid value for model.schedule: allowed {SCHEDULES}, got {schedule!r}.")
        if select_on not in ("balanced_accuracy", "auroc"):
            raise ConfigError(f"Invalid value for model.select_on: allowed 'balanced_accuracy', 'auroc', "
                              f"got {select_on!r}.")
        self.head_lr = None if head_lr is None else float(head_lr)
        self.schedule, self.select_on, self.freeze = schedule, select_on, list(freeze or [])
        self.checkpoint, self.adaptation, self.head_kind, self.pooling = checkpoint, adaptation, head, pooling
        self.lora_rank, self.from_scratch, self.architecture = int(lora_rank), bool(from_scratch), architecture
        self.weight_decay, self.patience, self.seed = float(weight_decay), int(patience), int(seed)
        self.trial_facts = trial_facts
        self.lr = self.lrs[0]
        self.backbone: FeatureBackbone | None = None
        self.backbone_info: Any = None
        if checkpoint is not None:
            loaded = load_backbone(checkpoint)
            self.backbone = fresh_backbone(loaded) if from_scratch else loaded
            self.backbone_info = self.backbone.info
        self.net: nn.Module | None = None
        self.head_config: dict[str, Any] = {}
        self.class_weights: torch.Tensor | None = None
        self.best_score, self.best_epoch, self.best_state = -1.0, 0, None
        self.best: ValidationScore | None = None
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"val": [], "test": []}
        self.test_proba: np.ndarray | None = None
        self._features: torch.Tensor | None = None
        self._row_of: dict[tuple[int, int], int] = {}

    @property
    def training_data(self) -> dict[str, Any]:
        """What the backbone was pretrained on (empty for scratch networks and ``from_scratch``)."""
        return {} if self.backbone_info is None else dict(self.backbone_info.training_data or {})

    def build(self, example: Batch) -> None:
        """Build the network (seeded), reading the feature shape from an example batch.

        Parameters
        ----------
        example : Batch
            A few trials of the task.
        """
        if self.net is not None:
            return
        facts = self.trial_facts
        if facts is None:
            raise ConfigError("FinetuneModule needs trial_facts (linked from the data module by brainfm finetune).")
        if self.architecture is not None:
            def make() -> nn.Module:
                if self.architecture == "eegnet":
                    return EEGNet(facts.n_chans, facts.n_times, facts.n_classes, facts.sfreq)
                return FunctionalNet(facts.n_chans, facts.n_times, facts.n_classes)
            self.net = seeded(make, self.seed)
            return
        assert self.backbone is not None
        with torch.no_grad():
            n_tokens, dim = self.backbone.eval().features(example).shape[1:]  # (B, N, D)
        self.head_config = {"n_tokens": int(n_tokens), "feature_dim": int(dim), "n_outputs": facts.n_classes,
                            "pooling": self.pooling, "kind": self.head_kind}

        def make_classifier() -> nn.Module:
            return BackboneClassifier(self.backbone, ClassificationHead(**self.head_config),  # type: ignore[arg-type]
                                      self.adaptation, self.lora_rank, freeze=self.freeze)
        self.net = seeded(make_classifier, self.seed)
        self.backbone = None  # the classifier holds its own copy

    def cache_features(self, trials: Trials) -> None:
        """With a frozen backbone, compute every trial's features once (probes then train on them).

        Parameters
        ----------
        trials : Trials
            The trials the module will see; batches of other trials still go through the backbone.
        """
        if not (isinstance(self.net, BackboneClassifier) and self.net.adaptation == "frozen"):
            return
        self._features = frozen_features(self.net.backbone, trials)  # (n_trials, N, D)
        keys = zip(trials.batch.recording_ids.tolist(), trials.batch.start.tolist(), strict=True)
        self._row_of = {key: row for row, key in enumerate(keys)}

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B, n_classes) logits."""
        assert self.net is not None, "call build() first"
        if self.architecture is not None:
            return self.net(batch.signal, batch.channel_mask)
        if self._features is not None:
            rows = [self._row_of.get(key) for key in zip(batch.recording_ids.tolist(), batch.start.tolist(), strict=True)]
            if None not in rows:  # every trial's features are cached: only the head runs
                return self.net.head(self._features[rows].to(self.device))  # type: ignore[union-attr,operator]
        return self.net(batch)

    # -- Lightning hooks -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Build the network from the data module's first trials; class weights from the fitting trials."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            return
        if self.net is None:
            self.build(data.trials.take(np.arange(min(2, len(data.trials)))))
        if self._features is None:
            self.cache_features(data.trials)
        if stage == "fit":
            y = data.trials.y[data.rows("fit")]
            counts = np.bincount(y, minlength=self.trial_facts.n_classes).astype(np.float64)  # type: ignore[union-attr]
            self.class_weights = torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Class-weighted cross-entropy."""
        weights = None if self.class_weights is None else self.class_weights.to(self.device)
        loss = nn.functional.cross_entropy(self(batch), batch.labels, weight=weights)
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch))
        return loss

    def _collect(self, part: str, batch: Batch) -> None:
        self._outputs[part].append((self(batch).float().detach().cpu(), batch.labels.detach().cpu()))

    def _gathered(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.cat([o[0] for o in self._outputs[part]])
        labels = torch.cat([o[1] for o in self._outputs[part]])
        self._outputs[part] = []
        return logits, labels

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Collect validation logits (scored over the whole split at the epoch's end)."""
        self._collect("val", batch)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/balanced_accuracy``, ``val/auroc`` (binary tasks) and ``val/loss`` over every validation trial."""
        if not self._outputs["val"]:
            return
        logits, labels = self._gathered("val")
        proba = torch.softmax(logits, dim=-1).numpy()
        scores = score_predictions(labels.numpy(), proba.argmax(1), proba, logits.shape[1])
        self.log("val/balanced_accuracy", scores["balanced_accuracy"], prog_bar=True)
        if logits.shape[1] == 2:
            self.log("val/auroc", scores["auroc"], prog_bar=self.select_on == "auroc")
        weights = None if self.class_weights is None else self.class_weights.cpu()
        self.log("val/loss", nn.functional.cross_entropy(logits, labels, weight=weights).item())

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Collect test logits."""
        self._collect("test", batch)

    def on_test_epoch_end(self) -> None:
        """Keep the test probabilities (scored by the caller with every metric)."""
        if self._outputs["test"]:
            logits, _ = self._gathered("test")
            self.test_proba = torch.softmax(logits, dim=-1).numpy()

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the trainable weights: the backbone at ``self.lr``, the head at ``head_lr``; the
        per-epoch ``schedule``."""
        assert self.net is not None, "call build() first"
        optimizer = torch.optim.AdamW(parameter_groups(self.net, self.lr, self.head_lr), lr=self.lr,
                                      weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_lambda(self.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_callbacks(self) -> list[Callback]:
        """Early stopping and best-epoch weights on the validation score (``select_on``, then loss)."""
        return [BestWeights(self.patience, self.select_on)]
