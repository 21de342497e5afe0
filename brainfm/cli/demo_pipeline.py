"""The whole pipeline on the bundled sample, stage by stage, through the code the commands use.

``brainfm demo`` calls :func:`run_demo`: the bundled EEGMMIDB sample (subject 1, run 3
executed and run 4 imagined opening and closing of the left or right fist, 64 channels,
160 Hz) ->

1. ``preprocess`` (recipe ``default``: 256 Hz, notch, high-pass, average reference) ->
   ``OUT/store.zarr``;
2. ``store info`` and the quality report -> ``OUT/report.html``;
3. a BrainTokenizer (``pretrain fit --recipe braintokenizer --size tiny``) trained on one run and
   validated on the other -> ``OUT/tokenizer/``;
4. a small BrainOmni stage 2 on the frozen tokenizer (``pretrain fit --recipe brainomni``) ->
   ``OUT/pretrain/``, where this brainfm ships the recipe;
5. ``evaluate``: left vs right fist, each run held out once (``cross_run``), classical baselines
   (log band power, Riemannian tangent space, CSP + LDA) and EEGNet against the pretrained
   features (zero-shot logistic regression, a trained probe, fine-tuning) on the same folds ->
   ``OUT/evaluation/`` (``results.md``/``.csv``/``.json``, ``folds.png``, ``confusion_*.png``).

The sample holds one subject, so the evaluation tests on the subject the tokenizer was
pretrained on (and, in one of the two folds, on its training run): the leakage guard is
overridden on purpose and the summary says what leaked. Honest numbers need pretraining on
other subjects (``docs/tutorial.md``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, Literal

import yaml

from brainfm.errors import BrainFMError

__all__ = ["BUDGETS", "DemoBudget", "DemoResult", "run_demo"]

#: Identity of the bundled files (``S001R03.edf``): subject and run.
SAMPLE_PATTERN = r"S(?P<subject>\d+)R(?P<run>\d+)"


@dataclass(frozen=True)
class DemoBudget:
    """How much training each stage of the demo does."""

    name: str
    """``small`` (CI, about a minute) or ``full`` (``make demo``, a few minutes on 2 cores)."""
    tokenizer_epochs: int
    """BrainTokenizer epochs over the training run."""
    tokenizer_batches: int | None
    """Training batches per epoch of the tokenizer and the foundation model (None: the whole run)."""
    model_epochs: int
    """Foundation-model (BrainOmni stage 2) epochs over the training run."""
    seeds: tuple[int, ...]
    """Evaluation seeds (each reseeds every model)."""
    max_epochs: int
    """Upper bound on the epochs of each trained decoder (early stopping on validation)."""
    lrs: tuple[float, ...]
    """Learning rates tried by each trained decoder (the best on validation wins)."""
    finetune: bool
    """Also fine-tune the tokenizer's encoder with a head (the slowest decoder)."""


#: The budgets of ``brainfm demo --budget``.
BUDGETS: dict[str, DemoBudget] = {
    "small": DemoBudget("small", tokenizer_epochs=1, tokenizer_batches=2, model_epochs=1, seeds=(0,), max_epochs=3,
                        lrs=(1e-3,), finetune=False),
    "full": DemoBudget("full", tokenizer_epochs=6, tokenizer_batches=None, model_epochs=4, seeds=(0, 1, 2),
                       max_epochs=30, lrs=(1e-3, 3e-4), finetune=True),
}


@dataclass
class DemoResult:
    """What the demo produced and where."""

    out: Path
    """The run folder."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Output name -> path (store, report, tokenizer checkpoint, results, figures...)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Stage -> wall-clock seconds."""
    table: str = ""
    """The evaluation's Markdown table."""
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model -> ``kind`` and mean/sd balanced accuracy."""
    leaked: dict[str, list[str]] = field(default_factory=dict)
    """Checkpoint model -> subjects/recordings it was pretrained on that the evaluation tests."""
    pretrained_on: list[str] = field(default_factory=list)
    """Recordings the tokenizer trained on (the foundation model trains on the same split)."""
    exit_status: int = 0
    """0 when every stage ran; 1 when preprocessing failed on a file."""

    def to_json(self) -> dict[str, Any]:
        """The result as plain values (``brainfm demo --json``)."""
        return {"out": str(self.out), "outputs": self.outputs, "seconds": self.seconds, "models": self.scores,
                "leakage": self.leaked, "pretrained_on": self.pretrained_on, "exit_status": self.exit_status}


def _stage(say: Callable[[str], None], result: DemoResult, number: int, total: int, name: str, text: str
           ) -> contextlib.AbstractContextManager[None]:
    """Announce a stage and record how long it took."""
    say(f"[{number}/{total}] {text}")

    @contextlib.contextmanager
    def timed() -> Iterator[None]:
        started = time.perf_counter()
        yield
        result.seconds[name] = round(time.perf_counter() - started, 1)

    return timed()


@contextlib.contextmanager
def _quiet_training(verbose: bool) -> Iterator[None]:
    """Hide Lightning's tips and the warnings a tiny CPU run triggers (shown with ``verbose``)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in ("`isinstance\\(treespec, LeafSpec\\)` is deprecated", "The .* does not have many workers",
                            "The number of training batches", "Found .* module\\(s\\) in eval mode"):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def latest_checkpoint(root: Path) -> Path:
    """The last checkpoint of the newest run under ``root/lightning_logs``.

    Parameters
    ----------
    root : pathlib.Path
        The ``--trainer.default_root_dir`` of a ``brainfm pretrain fit`` run.

    Returns
    -------
    path : pathlib.Path
        The newest ``.ckpt`` file of the highest ``version_N`` folder.
    """
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    found = sorted((versions[-1] / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime) if versions else []
    if not found:
        raise BrainFMError(f"No checkpoint was written under {root}; see the training log above.")
    return found[-1]


#: A BrainOmni stage 2 small enough for minutes on a CPU, on the tiny BrainTokenizer's latents
#: (width 32, 4 latents, 64 codes): ``--model.*`` overrides of ``--recipe brainomni``.
SMALL_BRAINOMNI = {"backbone.init_args.dim": 64, "backbone.init_args.n_heads": 4, "backbone.init_args.depth": 2,
                   "backbone.init_args.token_dim": 32, "backbone.init_args.n_latents": 4,
                   "objective.init_args.dim": 64, "objective.init_args.n_codes": 64}


def has_foundation_model() -> bool:
    """Whether this brainfm ships the BrainOmni recipe (``configs/pretrain/brainomni.yaml``)."""
    return (files("brainfm.configs") / "pretrain" / "brainomni.yaml").is_file()


def _fit(recipe: list[str], store: Path, out: Path, epochs: int, budget: DemoBudget, progress: bool) -> Path:
    """``brainfm pretrain fit RECIPE`` on one run, validated on the other; the run's last checkpoint."""
    from brainfm.pretrain.cli import run_pretrain

    argv = ["fit", *recipe, "--data.store", str(store),
            # two recordings: one trains, the other validates (whole runs, never windows of both)
            "--data.split_unit", "recording", "--data.val_fraction", "0.5",
            "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.default_root_dir", str(out), "--trainer.log_every_n_steps", "1",
            "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", str(progress).lower()]
    if budget.tokenizer_batches is not None:
        argv += ["--trainer.limit_train_batches", str(budget.tokenizer_batches),
                 "--trainer.limit_val_batches", str(budget.tokenizer_batches)]
    run_pretrain(argv)
    return latest_checkpoint(out)


def _brainomni_recipe(tokenizer: Path) -> list[str]:
    """``--recipe brainomni`` on the demo's frozen tokenizer, small, on 4-s segments (the trial length)."""
    argv = ["--recipe", "brainomni", f"--model.tokenizer.init_args.checkpoint={tokenizer}", "--data.window_s", "4.0",
            "--data.batch_size", "8"]
    for key, value in SMALL_BRAINOMNI.items():
        argv += [f"--model.{key}", str(value)]
    return argv


def demo_task(store: Path, tokenizer: Path, budget: DemoBudget, model: Path | None = None) -> dict[str, Any]:
    """The demo's decoding task: left vs right fist, each run held out once.

    Parameters
    ----------
    store : pathlib.Path
        The demo's store.
    tokenizer : pathlib.Path
        The pretrained tokenizer (its features are decoded zero-shot).
    budget : DemoBudget
        Seeds and training budget of the decoders.
    model : pathlib.Path | None
        The pretrained foundation model (zero-shot, probe and, with the full budget, fine-tuned);
        None: the tokenizer's features are probed and fine-tuned instead.

    Returns
    -------
    task : dict
        A task as ``configs/downstream/<task>.yaml`` holds it (written to ``OUT/task.yaml``).
    """
    trained = {"max_epochs": budget.max_epochs, "lrs": list(budget.lrs), "patience": 5, "batch_size": 8}
    models: list[dict[str, Any]] = [{"name": "tokenizer_zero_shot", "kind": "zero_shot", "checkpoint": str(tokenizer)}]
    name, checkpoint = ("brainomni", model) if model is not None else ("tokenizer", tokenizer)
    if model is not None:
        models.append({"name": "brainomni_zero_shot", "kind": "zero_shot", "checkpoint": str(model)})
    models.append({"name": f"{name}_probe", "kind": "probe", "checkpoint": str(checkpoint), "head": "linear", **trained})
    if budget.finetune:
        models.append({"name": f"{name}_finetune", "kind": "finetune", "checkpoint": str(checkpoint),
                       "adaptation": "full", **trained, "lrs": [3e-4], "max_epochs": min(budget.max_epochs, 10)})
    models.append({"name": "eegnet", "kind": "scratch", "architecture": "eegnet", **trained})
    return {
        "name": "demo_left_right_fist",
        "description": "left vs right fist, EEGMMIDB subject 1: run 3 executed, run 4 imagined; each run held out once",
        "store": str(store),
        "select": {"dataset": ["eegmmidb"]},
        "channel_types": ["eeg"],
        # the tokenizer was trained on per-sensor-type scaled signals: decode the same
        "normalization": "sensortype",
        "classes": ["left_fist", "right_fist"],
        "labels": {"events": {"T1": "left_fist", "T2": "right_fist"}},
        "window": {"tmin": 0.0, "tmax": 4.0},
        "protocol": {"name": "cross_run", "seeds": list(budget.seeds), "val_fraction": 0.2},
        "baselines": ["bandpower_lr", "tangent_lr", "csp_lda"],
        "models": models,
    }


def run_demo(out: str | Path, *, budget: Literal["small", "full"] = "full", jobs: int = 1,
             say: Callable[[str], None] = lambda text: None, progress: bool = False, verbose: bool = False) -> DemoResult:
    """Run the whole pipeline on the bundled sample into one run folder.

    Parameters
    ----------
    out : str | pathlib.Path
        The run folder (created; a second run reuses the store and adds a new training run).
    budget : ``"small"`` | ``"full"``
        How much training (:data:`BUDGETS`).
    jobs : int
        Preprocessing worker processes.
    say : callable
        Receives one line per stage and the stage summaries (the CLI writes them to stdout).
    progress : bool
        Show a progress bar per stage on stderr (preprocessing, report, training, evaluation).
    verbose : bool
        Keep Lightning's tips and warnings.

    Returns
    -------
    result : DemoResult
        Where every output is, seconds per stage, the table and the scores.
    """
    from brainfm.checkpoint import read_checkpoint
    from brainfm.cli.evaluate_cmd import evaluate_with_progress
    from brainfm.cli.store_cmd import _info_table
    from brainfm.downstream.decoding.report import markdown_table
    from brainfm.downstream.decoding.task import load_task
    from brainfm.preprocessing.report import write_report
    from brainfm.preprocessing.run import preprocess
    from brainfm.store.reader import open_store
    from brainfm.store.summary import store_info

    chosen = BUDGETS[budget]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out)
    store_path = out / "store.zarr"
    with_model = has_foundation_model()
    total = 5 if with_model else 4
    with as_file(files("brainfm") / "sample_data" / "eegmmidb") as sample:
        with _stage(say, result, 1, total, "preprocess", f"brainfm preprocess {sample} {store_path} "
                    f"--pattern '{SAMPLE_PATTERN}' (recipe 'default': 256 Hz, notch, 0.1 Hz high-pass, average reference)"):
            summary = preprocess(sample, store_path, recipe="default", jobs=jobs, dataset="eegmmidb",
                                 pattern=SAMPLE_PATTERN, progress=progress)
    result.exit_status = summary.exit_status
    say(summary.table())
    result.outputs["store"] = str(store_path)

    with _stage(say, result, 2, total, "report", f"brainfm store info {store_path}; brainfm report {store_path}"):
        say(_info_table(store_info(open_store(store_path))))
        report = write_report(store_path, out / "report.html", progress=progress)
    result.outputs["report"] = str(report["html"])
    say(f"  quality report (spectra, sensor layout, events, provenance): {report['html']}")

    tokenizer_dir = out / "tokenizer"
    with _stage(say, result, 3, total, "tokenizer", f"brainfm pretrain fit --recipe braintokenizer --size tiny "
                f"--data.store {store_path} ({chosen.tokenizer_epochs} epoch(s), budget {chosen.name!r})"):
        with _quiet_training(verbose):
            checkpoint = _fit(["--recipe", "braintokenizer", "--size", "tiny"], store_path, tokenizer_dir,
                              chosen.tokenizer_epochs, chosen, progress)
    training_data = read_checkpoint(checkpoint)["brainfm"].get("training_data") or {}
    result.pretrained_on = list(training_data.get("recordings", []))
    result.outputs["tokenizer_checkpoint"] = str(checkpoint)
    result.outputs["tokenizer_log"] = str(checkpoint.parent.parent / "metrics.csv")
    say(f"  BrainTokenizer trained on {', '.join(result.pretrained_on)}: {checkpoint}")

    model: Path | None = None
    if with_model:
        model_dir = out / "pretrain"
        with _stage(say, result, 4, total, "pretrain", f"brainfm pretrain fit --recipe brainomni --data.store {store_path} "
                    f"--model.tokenizer.init_args.checkpoint {checkpoint.name} (BrainOmni stage 2, small: width 64, "
                    f"2 blocks; {chosen.model_epochs} epoch(s))"):
            with _quiet_training(verbose):
                model = _fit(_brainomni_recipe(checkpoint), store_path, model_dir, chosen.model_epochs, chosen, progress)
        result.outputs["model_checkpoint"] = str(model)
        result.outputs["model_log"] = str(model.parent.parent / "metrics.csv")
        say(f"  BrainOmni (masked-token prediction of the frozen tokenizer's codes): {model}")

    task_path = out / "task.yaml"
    task_path.write_text(yaml.safe_dump(demo_task(store_path, checkpoint, chosen, model), sort_keys=False))
    result.outputs["task"] = str(task_path)
    evaluation_dir = out / "evaluation"
    with _stage(say, result, total, total, "evaluate", f"brainfm evaluate --config {task_path} --out {evaluation_dir} "
                "--allow-leakage (cross_run: each run held out once)"):
        with _quiet_training(verbose):
            evaluation, leaked, written = evaluate_with_progress(
                load_task(task_path), evaluation_dir, allow_leakage=True, show_progress=progress)
    result.leaked = leaked
    result.table = markdown_table(evaluation)
    result.scores = {name: {"kind": scores.kind, "balanced_accuracy": scores.summary("balanced_accuracy")}
                     for name, scores in evaluation.models.items()}
    result.outputs.update({"results_markdown": written["markdown"], "results_csv": written["csv"],
                           "results_json": written["json"]})
    for figure in written["figures"]:
        result.outputs[f"figure_{Path(figure).stem}"] = figure
    return result

