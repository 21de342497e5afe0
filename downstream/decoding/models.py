"""brainfm models in ``brainfm evaluate``: zero-shot features, probes, fine-tuning, from-scratch networks.

Each :class:`~brainfm.downstream.decoding.task.ModelConfig` becomes a ``fit_predict``
runner that :func:`~brainfm.downstream.decoding.evaluation.evaluate_task` calls on every
fold and seed:

- ``zero_shot`` (MEG-GPT §7.3): frozen ``features(batch)`` averaged over tokens, z-scored with
  training statistics, logistic regression (1,000 iterations);
- ``probe``: frozen features, a trained head (``linear`` or ``mlp``, ``pooling`` mean / cls / flatten);
- ``finetune``: the head and the backbone (``adaptation: full``) or LoRA updates of its attention
  projections (``adaptation: lora``) trained together; under LoRA the outputs of the frozen
  parts (a BrainTokenizer's SEANet encoder) are computed once per trial and reused by every
  epoch, fold and seed (:mod:`~brainfm.downstream.decoding.frozen_outputs`);
- ``scratch``: ``eegnet`` or ``functional`` trained on the signal.

Every model may align each subject to itself without labels (``align``:
:mod:`~brainfm.downstream.decoding.alignment`): ``signal`` (Euclidean alignment of the input,
any kind) or ``features`` (frozen features standardised per subject; zero_shot and probe).

Trained models pick their learning rate and stopping epoch on the validation split of the
training fold (:mod:`brainfm.downstream.decoding.training`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from brainfm._logging import logger
from brainfm.downstream.decoding.alignment import align_signal, standardize_per_group
from brainfm.downstream.decoding.backbone import FeatureBackbone, load_backbone
from brainfm.downstream.decoding.classifier import BackboneClassifier
from brainfm.downstream.decoding.eegnet import EEGNet
from brainfm.downstream.decoding.evaluation import FitPredict
from brainfm.downstream.decoding.frozen_outputs import OutputStore
from brainfm.downstream.decoding.functional_layers import FunctionalNet
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.leakage import check_leakage
from brainfm.downstream.decoding.task import DecodingTask, ModelConfig
from brainfm.downstream.decoding.training import fit_classifier, predict
from brainfm.downstream.decoding.trials import Trials

__all__ = ["build_model_runners", "frozen_features"]


def frozen_features(backbone: FeatureBackbone, trials: Trials, batch_size: int = 64) -> torch.Tensor:
    """Features (n_trials, N, D) of every trial, without gradients."""
    out = []
    backbone.eval()
    with torch.no_grad():
        for i in range(0, len(trials), batch_size):
            out.append(backbone.features(trials.take(np.arange(i, min(i + batch_size, len(trials))))).float())
    return torch.cat(out)


def _zero_shot(features: torch.Tensor, subjects: np.ndarray | None = None) -> FitPredict:
    pooled = features.mean(dim=1).to(torch.float64)  # (n, D) averaged over tokens
    if subjects is not None:  # align: features
        pooled = standardize_per_group(pooled, subjects)
    pooled = pooled.numpy()

    def fit_predict(trials: Trials, fit_rows: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = np.concatenate([fit_rows, val_rows])
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        pipeline.fit(pooled[train], trials.y[train])
        full = np.zeros((len(test_rows), len(trials.classes)))
        full[:, pipeline.classes_] = pipeline.predict_proba(pooled[test_rows])
        return full.argmax(1), full

    return fit_predict


def _trained(config: ModelConfig, make_net, forward) -> FitPredict:  # type: ignore[no-untyped-def]
    def fit_predict(trials: Trials, fit_rows: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
        trained = fit_classifier(make_net, forward, trials.y, fit_rows, val_rows, lrs=config.lrs,
                                 max_epochs=config.max_epochs, patience=config.patience,
                                 batch_size=config.batch_size, weight_decay=config.weight_decay, seed=seed,
                                 head_lr=config.head_lr, schedule=config.schedule, select_on=config.select_on)
        logger.info("%s: lr %g, %d epochs, validation %s %.3f", config.name, trained.lr, trained.epochs,
                    trained.select_on, trained.val_score)
        proba = predict(trained.net, forward, test_rows, config.batch_size)
        return proba.argmax(1), proba

    return fit_predict


def build_model_runners(task: DecodingTask, trials: Trials, *, allow_leakage: bool = False
                        ) -> tuple[dict[str, tuple[Literal["baseline", "brainfm"], FitPredict]], dict[str, list[str]]]:
    """A runner per model of the task, after the leakage guard.

    Parameters
    ----------
    task : DecodingTask
        The task (``models``).
    trials : Trials
        Its trials.
    allow_leakage : bool
        Run even when test subjects or recordings were in a checkpoint's pretraining.

    Returns
    -------
    runners : dict
        Name -> (kind, fit_predict).
    leaked : dict of str to list of str
        Name -> leaked subjects/recordings (only with ``allow_leakage``).
    """
    runners: dict[str, tuple[Literal["baseline", "brainfm"], FitPredict]] = {}
    leaked: dict[str, list[str]] = {}
    backbones: dict[str, FeatureBackbone] = {}
    cached: dict[str, torch.Tensor] = {}
    frozen_outputs: dict[str, OutputStore] = {}  # LoRA: the frozen parts' outputs, per checkpoint
    n_classes = len(trials.classes)
    aligned: dict[str, Trials] = {}  # "none" / "signal" -> the trials the models read
    for config in task.models:
        mode = "signal" if config.align == "signal" else "none"
        if mode not in aligned:
            aligned[mode] = align_signal(trials, mode)
        model_trials = aligned[mode]
        if config.kind == "scratch":
            n_chans, n_times = trials.batch.signal.shape[1:]
            if config.architecture == "eegnet":
                def make_net(n_chans=n_chans, n_times=n_times):  # type: ignore[no-untyped-def]
                    return EEGNet(n_chans, n_times, n_classes, trials.sfreq)
            else:
                def make_net(n_chans=n_chans, n_times=n_times):  # type: ignore[no-untyped-def]
                    return FunctionalNet(n_chans, n_times, n_classes)
            signal, mask = model_trials.batch.signal, model_trials.batch.channel_mask

            def forward(net, rows, signal=signal, mask=mask):  # type: ignore[no-untyped-def]
                return net(signal[rows], mask[rows])
            runners[config.name] = ("baseline", _trained(config, make_net, forward))
            continue
        assert config.checkpoint is not None
        if config.checkpoint not in backbones:
            backbone = load_backbone(config.checkpoint)
            found = check_leakage(backbone.training_data, trials, checkpoint=config.checkpoint, allow=allow_leakage)
            backbones[config.checkpoint] = backbone
            if found:
                leaked[config.name] = found
        backbone = backbones[config.checkpoint].with_source(config.features)
        key = f"{mode}:{config.features}:{config.checkpoint}"  # frozen features and outputs of this input and checkpoint
        if config.kind in ("zero_shot", "probe") and key not in cached:
            cached[key] = frozen_features(backbone, model_trials)
        subjects = trials.subject if config.align == "features" else None
        if config.kind == "zero_shot":
            runners[config.name] = ("brainfm", _zero_shot(cached[key], subjects))
            continue
        features = cached.get(key)
        if features is not None and subjects is not None:
            features = standardize_per_group(features, subjects)
        n_tokens, dim = (features.shape[1:] if features is not None
                         else frozen_features(backbone, _first(model_trials)).shape[1:])

        def make_head(config=config, n_tokens=n_tokens, dim=dim):  # type: ignore[no-untyped-def]
            return ClassificationHead(n_tokens, dim, n_classes, config.pooling, config.head)
        if config.kind == "probe":
            def forward(net, rows, features=features):  # type: ignore[no-untyped-def]
                return net(features[rows])
            runners[config.name] = ("brainfm", _trained(config, make_head, forward))
        else:
            store = frozen_outputs.setdefault(key, OutputStore())

            def make_net(config=config, backbone=backbone, make_head=make_head, store=store):  # type: ignore[no-untyped-def]
                return BackboneClassifier(backbone, make_head(), config.adaptation, config.lora_rank,
                                          frozen_outputs=store if config.adaptation == "lora" else None,
                                          freeze=config.freeze)

            def forward(net, rows, model_trials=model_trials):  # type: ignore[no-untyped-def]
                return net(model_trials.take(rows))
            runners[config.name] = ("brainfm", _trained(config, make_net, forward))
    return runners, leaked


def _first(trials: Trials) -> Trials:
    """A view of the first two trials (to read the feature shape)."""
    return Trials(trials.take(np.arange(min(2, len(trials)))), trials.y[:2], trials.subject[:2], trials.session[:2],
                  trials.run[:2], trials.recording[:2], trials.classes, trials.sfreq, trials.ch_names, trials.sources,
                  trials.index)
