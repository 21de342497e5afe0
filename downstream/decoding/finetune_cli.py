"""``brainfm finetune fit|test``: LightningCLI over :class:`FinetuneModule` and :class:`TrialDataModule`.

``brainfm finetune fit --config configs/downstream/<task>.yaml --model.checkpoint CKPT [--model.* ...]
[--data.* ...] [--trainer.* ...]`` trains a classifier on one fold of the task's protocol: one
copy per learning rate in ``model.lrs``, each stopped early on the validation balanced
accuracy, the best kept (never looking at the test trials). A task YAML given as ``--config``
stands for ``--data.task``; a ``--config`` of ``model:``/``data:``/``trainer:`` keys is read
as LightningCLI reads it. The run folder (``--trainer.default_root_dir``, default
``finetune_<task>``) receives ``config.yaml`` (the resolved config), ``model.ckpt`` (a brainfm
checkpoint, :mod:`~brainfm.downstream.decoding.finetuned_checkpoint`) and a CSV log per
learning rate (``lightning_logs/lr_<lr>/metrics.csv``).

``brainfm finetune test --checkpoint RUN/model.ckpt [--data.* ...] [--out DIR]`` scores the
fine-tuned model on the test trials of the fold it was trained for (or of ``--data.*``
overrides, e.g. another store) with the metrics and JSON keys of ``brainfm evaluate``, after
the leakage guard.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from brainfm._logging import logger
from brainfm.downstream.decoding.evaluation import EvaluationResult, ModelResult
from brainfm.downstream.decoding.finetune_module import FinetuneModule
from brainfm.downstream.decoding.finetuned_checkpoint import load_finetuned, save_finetuned
from brainfm.downstream.decoding.leakage import check_leakage
from brainfm.downstream.decoding.metrics import confusion, score_predictions
from brainfm.downstream.decoding.trial_datamodule import TrialDataModule
from brainfm.errors import ConfigError

__all__ = ["FinetuneCLI", "run_finetune", "test_finetuned"]

#: Lightning's defaults changed for fine-tuning: epochs bounded by early stopping, no sanity pass,
#: brainfm writes the checkpoint itself.
TRAINER_DEFAULTS = {"max_epochs": 30, "num_sanity_val_steps": 0, "enable_checkpointing": False,
                    "enable_model_summary": False, "log_every_n_steps": 1}
#: Trials live in memory: loader workers would only add start-up time.
_QUIET = (".*does not have many workers.*", ".*smaller than the logging interval.*",
          r".*isinstance\(treespec, LeafSpec\).*",
          ".*module\\(s\\) in eval mode at the start of training.*")  # the backbone stays in eval mode on purpose


class FinetuneCLI(LightningCLI):
    """LightningCLI with the trial facts linked from the data into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link ``data.trial_facts`` (classes, channels, samples, rate) into ``model.trial_facts``."""
        parser.link_arguments("data.trial_facts", "model.trial_facts", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """A Trainer without a logger unless one is given (each learning rate gets its own CSV log)."""
        kwargs.setdefault("logger", False)
        return super().instantiate_trainer(**kwargs)


def _flags(argv: list[str], names: Sequence[str]) -> tuple[list[str], set[str]]:
    """Take boolean flags (``--json``, ``--allow-leakage``) out of the arguments."""
    found = {a for a in argv if a in names}
    return [a for a in argv if a not in names], found


def _is_task(path: str) -> bool:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "classes" in raw and "labels" in raw


def _expand_task(argv: list[str]) -> list[str]:
    """``--config TASK.yaml`` (a decoding task, not a LightningCLI config) -> ``--data.task TASK.yaml``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        key, eq, inline = argv[i].partition("=")
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if key == "--config" and value and _is_task(value):
            out += ["--data.task", value]
            i += 1 if eq else 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _quiet_fit(trainer: Trainer, *args: Any, **kwargs: Any) -> None:
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(*args, **kwargs)


def fit_finetune(argv: Sequence[str], *, allow_leakage: bool = False) -> dict[str, Any]:
    """``brainfm finetune fit``: train, choosing the learning rate and the epoch on validation; save the model.

    Parameters
    ----------
    argv : sequence of str
        LightningCLI arguments (``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``).
    allow_leakage : bool
        Train even when the fold's test subjects or recordings were in the checkpoint's pretraining.

    Returns
    -------
    summary : dict
        ``checkpoint``, ``config``, ``task``, ``fold``, ``lr``, ``epochs``, ``select_on`` and the best
        validation score under ``val_<select_on>`` (``val_balanced_accuracy`` by default),
        ``lrs`` (every learning rate's best validation score and epoch), ``leakage``, ``seconds``.
    """
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
        cli = FinetuneCLI(FinetuneModule, TrialDataModule, args=_expand_task(list(argv)), run=False,
                          trainer_defaults=TRAINER_DEFAULTS, save_config_callback=None,
                          parser_kwargs={"prog": "brainfm finetune fit", "default_env": False},
                          auto_configure_optimizers=False, seed_everything_default=0)
    data: TrialDataModule = cli.datamodule
    base: FinetuneModule = cli.model
    root = Path(cli.config.trainer.default_root_dir or f"finetune_{data.task.name}")
    test_rows = data.rows("test")
    leaked = check_leakage(base.training_data, data.trials, test_rows, checkpoint=str(base.checkpoint),
                           allow=allow_leakage)
    logger.info("%s: fitting on %d trials, validating on %d, %d test trials held out (%s)", data.task.name,
                len(data.rows("fit")), len(data.rows("val")), len(test_rows), data.fold_name)
    base.build(data.trials.take(data.rows("fit")[:2]))
    base.cache_features(data.trials)  # probes: features once, shared by every learning rate
    tried: list[dict[str, Any]] = []
    best: FinetuneModule | None = None
    for lr in base.lrs:
        module = copy.deepcopy(base)
        module.lr = lr
        trainer = cli.instantiate_trainer(default_root_dir=str(root),
                                          logger=CSVLogger(root, name="lightning_logs", version=f"lr_{lr:g}"))
        _quiet_fit(trainer, module, datamodule=data)
        tried.append({"lr": lr, f"val_{base.select_on}": module.best_score,
                      "val_loss": None if module.best is None else module.best.loss, "epoch": module.best_epoch,
                      "epochs_run": int(trainer.current_epoch)})
        logger.info("lr %g: best validation %s %.3f at epoch %d", lr, base.select_on, module.best_score,
                    module.best_epoch)
        if best is None or (module.best is not None and module.best.better_than(best.best)):
            best = module  # higher validation select_on metric; a tie goes to the lower validation loss
    assert best is not None
    chosen = {"lr": best.lr, "epochs": best.best_epoch, f"val_{base.select_on}": best.best_score, "lrs_tried": tried}
    checkpoint = save_finetuned(root / "model.ckpt", best, data, chosen)
    config = root / "config.yaml"
    cli.parser.save(cli.config, config, overwrite=True)
    return {"checkpoint": str(checkpoint), "config": str(config), "task": data.task.name, "fold": data.fold_name,
            "n_fit": int(len(data.rows("fit"))), "n_val": int(len(data.rows("val"))), "n_test": int(len(test_rows)),
            "lr": best.lr, "epochs": best.best_epoch, "select_on": base.select_on,
            f"val_{base.select_on}": best.best_score, "lrs": tried,
            "leakage": leaked, "logs": str(root / "lightning_logs"), "seconds": round(time.perf_counter() - started, 2)}


def _model_name(finetune: dict[str, Any]) -> str:
    if finetune.get("architecture"):
        return str(finetune["architecture"])
    head = finetune.get("head") or {}
    name = f"{finetune['adaptation']}_{head.get('kind', 'linear')}_{head.get('pooling', 'mean')}"
    return name + ("_scratch" if finetune.get("from_scratch") else "")


def test_finetuned(argv: Sequence[str], *, allow_leakage: bool = False) -> tuple[EvaluationResult, dict[str, Any]]:
    """``brainfm finetune test``: score a fine-tuned checkpoint on its test trials.

    Parameters
    ----------
    argv : sequence of str
        ``--checkpoint FILE`` and optional ``--data.*`` overrides (``--config TASK.yaml`` stands for
        ``--data.task``), ``--out DIR`` for the results folder.
    allow_leakage : bool
        Test even on subjects or recordings the model has seen.

    Returns
    -------
    result : EvaluationResult
        One model, one fold: the keys of ``brainfm evaluate``.
    extra : dict
        ``leakage`` (model name -> leaked subjects/recordings), ``files`` (written results), ``checkpoint``.
    """
    from jsonargparse import ArgumentParser

    from brainfm.downstream.decoding.report import write_results

    argv = _expand_task(list(argv))
    parser = ArgumentParser(prog="brainfm finetune test", exit_on_error=False, default_env=False)
    parser.add_argument("--checkpoint", type=str, required=True, help="model.ckpt written by brainfm finetune fit")
    parser.add_argument("--out", type=str | None, default=None, help="results folder (default: <run folder>/test)")
    parser.add_argument("--name", type=str | None, default=None, help="model name in the results")
    parser.add_class_arguments(TrialDataModule, "data", default=None)
    if "--help" in argv or "-h" in argv:
        parser.parse_args(["--help"])  # prints the help and exits, as LightningCLI does
    for i, word in enumerate(argv):  # the checkpoint's own data settings are the defaults
        if word.startswith("--checkpoint"):
            path = word.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
            break
    else:
        raise ConfigError("brainfm finetune test needs --checkpoint FILE (the model.ckpt of brainfm finetune fit).")
    module, meta = load_finetuned(path)
    finetune = meta["finetune"]
    saved = dict(finetune["data"])
    if not Path(str(saved["task"])).is_file():
        saved["task"] = None  # moved: --data.task / --config must name it
    parser.set_defaults({f"data.{k}": v for k, v in saved.items()})
    try:
        args = parser.parse_args(argv)
    except Exception as exc:  # jsonargparse's ArgumentError
        raise ConfigError(" ".join(str(exc).split())) from exc
    if args.data.task is None:
        raise ConfigError(f"The task file the model was fine-tuned on ({finetune['data']['task']}) is gone: "
                          "give it with --config TASK.yaml.")
    data = TrialDataModule(**vars(args.data))
    facts, wanted = data.trial_facts, module.trial_facts
    assert wanted is not None
    if facts.classes != wanted.classes:
        raise ConfigError(f"The task's classes {facts.classes} differ from the model's {wanted.classes}.")
    if (facts.n_times, facts.sfreq) != (wanted.n_times, wanted.sfreq) or (
            facts.n_chans != wanted.n_chans and (finetune.get("architecture") or
                                                 (finetune.get("head") or {}).get("pooling") in ("flatten", "weighted"))):
        raise ConfigError(
            f"The trials ({facts.n_chans} channels x {facts.n_times} samples at {facts.sfreq:g} Hz) differ from those "
            f"the model was fine-tuned on ({wanted.n_chans} x {wanted.n_times} at {wanted.sfreq:g} Hz)."
        )
    name = args.name or _model_name(finetune)
    test_rows = data.rows("test")
    leaked = check_leakage(meta.get("training_data") or {}, data.trials, test_rows, checkpoint=path,
                           allow=allow_leakage)
    started = time.perf_counter()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                      default_root_dir=str(Path(path).parent))
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        trainer.test(module, datamodule=data, verbose=False)
    proba = module.test_proba
    assert proba is not None and len(proba) == len(test_rows)
    y_true, y_pred = data.trials.y[test_rows], proba.argmax(1)
    n_classes = len(facts.classes)
    split = data.split_record()
    fold = {"seed": data.seed, "fold": data.fold_name, "n_train": int(split["n_fit"]) + int(split["n_val"]),  # type: ignore[call-overload]
            "n_test": int(len(test_rows)), **score_predictions(y_true, y_pred, proba, n_classes)}
    model = ModelResult(kind="brainfm", folds=[fold], confusion=confusion(y_true, y_pred, n_classes),
                        seconds=[round(time.perf_counter() - started, 3)])
    result = EvaluationResult(task=data.task.name, protocol=data.task.protocol.name, classes=list(facts.classes),
                              models={name: model}, n_trials=len(data.trials),
                              n_subjects=len(set(data.trials.subject.tolist())),
                              seconds=time.perf_counter() - started)
    out = Path(args.out) if args.out else Path(path).parent / "test"
    files = write_results(result, data.task, out)
    return result, {"leakage": {name: leaked} if leaked else {}, "files": files, "checkpoint": str(path)}


def run_finetune(argv: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Run ``brainfm finetune fit|test`` with these arguments (the subcommand first).

    Parameters
    ----------
    argv : sequence of str
        E.g. ``["fit", "--config", "configs/downstream/eegmat_arithmetic.yaml", "--model.checkpoint", "tok.ckpt"]``;
        ``--allow-leakage`` may appear anywhere.

    Returns
    -------
    subcommand : str
        ``"fit"`` or ``"test"``.
    summary : dict
        :func:`fit_finetune`'s summary, or the ``brainfm evaluate`` JSON document of the test.
    """
    argv = list(argv)
    if not argv or argv[0] not in ("fit", "test"):
        raise ConfigError(f"brainfm finetune needs a subcommand: fit or test, got {argv[:1] or 'none'}.")
    rest, flags = _flags(argv[1:], ("--allow-leakage",))
    allow = "--allow-leakage" in flags
    if argv[0] == "fit":
        return "fit", fit_finetune(rest, allow_leakage=allow)
    result, extra = test_finetuned(rest, allow_leakage=allow)
    return "test", {**result.to_json(), "seconds": round(result.seconds, 2), **extra}
