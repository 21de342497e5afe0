"""The fine-tuned model of ``brainfm finetune fit`` as a brainfm checkpoint, and reading it back.

Written atomically with a digest of its weights (:func:`brainfm.checkpoint.atomic_save`), read
with ``torch.load(weights_only=True)``, verified and loaded strictly. Its ``"brainfm"`` entry
has the keys of a pretrained checkpoint (``tokenizer``, ``backbone``, ``data``, ...) so that
``brainfm.checkpoint.load_model`` reads its fine-tuned backbone as any pretrained model, and:

- ``state_dict``: ``tokenizer.*`` and ``backbone.*`` (the fine-tuned weights, LoRA updates
  merged into them) and ``head.*``; or ``network.*`` for a from-scratch signal network;
- ``training_data``: every recording and subject the weights have seen, pretraining and
  fine-tuning (fitting and validation trials) together, with their source SHA-256 under
  ``sources``, so the leakage guard of ``brainfm evaluate`` and ``brainfm finetune test``
  refuses to test on them; the pretraining record alone stays under ``training_data["pretraining"]``;
- ``finetune``: the task, its classes, the split, the head, the adaptation, the chosen
  learning rate, epochs and validation score of every learning rate tried.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from brainfm._version import __version__
from brainfm.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    atomic_save,
    load_model,
    load_state_strict,
    read_checkpoint,
    state_digest,
)
from brainfm.downstream.decoding.backbone import FeatureBackbone
from brainfm.downstream.decoding.classifier import BackboneClassifier
from brainfm.downstream.decoding.eegnet import EEGNet
from brainfm.downstream.decoding.finetune_module import FinetuneModule
from brainfm.downstream.decoding.functional_layers import FunctionalNet
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.lora import merge_lora
from brainfm.downstream.decoding.trial_datamodule import TrialDataModule, TrialFacts
from brainfm.errors import CheckpointError

__all__ = ["load_finetuned", "merged_training_data", "save_finetuned"]


def merged_training_data(pretraining: dict[str, Any], data: TrialDataModule) -> dict[str, Any]:
    """The pretraining record plus the fine-tuning data (fitting and validation trials, never test).

    Parameters
    ----------
    pretraining : dict
        The backbone checkpoint's ``training_data`` (empty for scratch networks).
    data : TrialDataModule
        The fine-tuning data.

    Returns
    -------
    record : dict
        ``subjects``, ``recordings`` and ``sources`` (recording id -> SHA-256) of both, the
        pretraining record under ``pretraining`` and the fine-tuning part under ``finetuning``.
    """
    trials = data.trials
    rows = [*data.rows("fit").tolist(), *data.rows("val").tolist()]
    subjects = sorted(set(trials.subject[rows].tolist()))
    recordings = sorted(set(trials.recording[rows].tolist()))
    sources = {r: trials.sources[r] for r in recordings if trials.sources.get(r)}
    finetuning = {"store": data.task.store, "task": data.task.name, "subjects": subjects, "recordings": recordings,
                  "sources": sources}
    record = {k: v for k, v in pretraining.items() if k not in ("subjects", "recordings", "sources")}
    record.update({
        "subjects": sorted(set(pretraining.get("subjects") or []) | set(subjects)),
        "recordings": sorted(set(pretraining.get("recordings") or []) | set(recordings)),
        "sources": {**dict(pretraining.get("sources") or {}), **sources},
        "pretraining": {k: v for k, v in pretraining.items() if k != "pretraining"} or None,
        "finetuning": finetuning,
    })
    return record


def save_finetuned(path: str | Path, module: FinetuneModule, data: TrialDataModule, finetune: dict[str, Any]) -> Path:
    """Write the fine-tuned classifier as a brainfm checkpoint (atomically, with its weight digest).

    Parameters
    ----------
    path : str | pathlib.Path
        Destination (``<run folder>/model.ckpt``).
    module : FinetuneModule
        The trained module (its best epoch's weights loaded).
    data : TrialDataModule
        The fine-tuning data (task, split, sources).
    finetune : dict
        What the run chose: ``lr``, ``epochs``, ``val_<select_on>``, ``lrs_tried``.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    net = copy.deepcopy(module.net)
    assert net is not None
    info = module.backbone_info
    if isinstance(net, BackboneClassifier):
        merge_lora(net.backbone)
        model_state = {k: v for k, v in net.backbone.model.state_dict().items() if not k.startswith("objective.")}
        state = {**model_state, **{f"head.{k}": v for k, v in net.head.state_dict().items()}}
    else:
        state = {f"network.{k}": v for k, v in net.state_dict().items()}
    facts = module.trial_facts
    assert facts is not None
    meta = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "brainfm_version": __version__,
        "tokenizer": (dict(info.tokenizer) or None) if info is not None else None,
        "backbone": (dict(info.backbone) or None) if info is not None else None,
        "objective": None,
        "data": info.data.to_dict() if info is not None and info.data is not None else None,
        "training_data": merged_training_data(module.training_data, data),
        "finetune": {
            "task": data.task.to_dict(),
            "task_file": data.task_file,
            "classes": list(facts.classes),
            "trial_facts": {"classes": list(facts.classes), "n_chans": facts.n_chans, "n_times": facts.n_times,
                            "sfreq": facts.sfreq},
            "data": {"task": data.task_file, "store": data.task.store, "fold": data.fold, "seed": data.seed,
                     "test_subjects": data.test_subjects, "val_fraction": data.task.protocol.val_fraction,
                     "batch_size": data.batch_size},
            "split": data.split_record(),
            "pretrained_checkpoint": module.checkpoint,
            "from_scratch": module.from_scratch,
            "architecture": module.architecture,
            "adaptation": module.adaptation,
            "lora_rank": module.lora_rank,
            "head": dict(module.head_config),
            **finetune,
        },
    }
    meta["state_digest"] = state_digest(state)
    path = Path(path)
    atomic_save({"state_dict": state, "epoch": int(finetune.get("epochs", 0)), "global_step": 0, "brainfm": meta}, path)
    return path


def load_finetuned(path: str | Path) -> tuple[FinetuneModule, dict[str, Any]]:
    """Rebuild a fine-tuned classifier with its weights (strictly), in evaluation mode.

    Parameters
    ----------
    path : str | pathlib.Path
        A checkpoint written by ``brainfm finetune fit``.

    Returns
    -------
    module : FinetuneModule
        Ready for ``Trainer.test`` (or ``module(batch)``).
    meta : dict
        The checkpoint's ``"brainfm"`` entry (``finetune``: task, split, choices; ``training_data``).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    meta = checkpoint["brainfm"]
    finetune = meta.get("finetune")
    if not isinstance(finetune, dict):
        raise CheckpointError(
            f"{path} is not a fine-tuned classifier (its 'brainfm' entry has no 'finetune'): it is a pretrained "
            "model. Fine-tune it first with 'brainfm finetune fit --model.checkpoint " f"{path} ...'."
        )
    facts = TrialFacts(**finetune["trial_facts"])
    state = checkpoint["state_dict"]
    net: nn.Module
    if finetune.get("architecture"):
        if finetune["architecture"] == "eegnet":
            net = EEGNet(facts.n_chans, facts.n_times, facts.n_classes, facts.sfreq)
        else:
            net = FunctionalNet(facts.n_chans, facts.n_times, facts.n_classes)
        load_state_strict(net, {k[len("network."):]: v for k, v in state.items()}, f"{path} (network)")
        module = FinetuneModule(architecture=finetune["architecture"], trial_facts=facts)
    else:
        model = load_model(path)  # the fine-tuned tokenizer/backbone, strictly (the head is left out)
        head = ClassificationHead(**finetune["head"])
        load_state_strict(head, {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")},
                          f"{path} (head)")
        net = BackboneClassifier(FeatureBackbone(model, model.info), head, adaptation="frozen")
        module = FinetuneModule(checkpoint=str(path), trial_facts=facts)
        module.head_config = dict(finetune["head"])
        module.backbone = None
    module.net = net.eval()
    return module.eval(), meta
