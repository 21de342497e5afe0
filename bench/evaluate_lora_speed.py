"""LoRA fine-tuning in ``brainfm evaluate``: with the frozen parts' outputs stored against without (issue 10 goal 2).

Both sides fit the same LoRA classifier (a checkpoint's features, mean pooling, linear head)
on the same folds of a task's protocol, the same seed, learning rates and epochs, alternating
per fold: ``plain`` recomputes the backbone at every step (what ``evaluate`` did before),
``stored`` gives the classifier an
:class:`~brainfm.downstream.decoding.frozen_outputs.OutputStore` shared by every fold, as
``evaluate`` now does. Printed per fold: seconds of each side, their ratio, and the test
balanced accuracy of each (they differ only by float rounding of batched versus stored outputs).

    OMP_NUM_THREADS=1 python bench/evaluate_lora_speed.py TASK.yaml CKPT [--store STORE] [--folds 5] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("checkpoint")
    parser.add_argument("--store", default=None)
    parser.add_argument("--folds", type=int, default=5, help="folds measured (of the protocol's first seed)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per fit (no early stop: both sides run them all)")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    import torch

    from brainfm.downstream.decoding.backbone import load_backbone
    from brainfm.downstream.decoding.classifier import BackboneClassifier
    from brainfm.downstream.decoding.frozen_outputs import OutputStore
    from brainfm.downstream.decoding.heads import ClassificationHead
    from brainfm.downstream.decoding.metrics import score_predictions
    from brainfm.downstream.decoding.protocols import make_folds, validation_split
    from brainfm.downstream.decoding.task import load_task
    from brainfm.downstream.decoding.training import fit_classifier, predict
    from brainfm.downstream.decoding.trials import load_trials

    task = load_task(args.task, store=args.store)
    trials = load_trials(task)
    backbone = load_backbone(args.checkpoint)
    with torch.no_grad():
        n_tokens, dim = backbone.eval().features(trials.take(np.arange(2))).shape[1:]  # (B, N, D)
    n_classes = len(trials.classes)
    seed = task.protocol.seeds[0]
    folds = make_folds(trials, task.protocol, seed)[: args.folds]
    store = OutputStore()
    rows_out = []
    totals = {"plain": 0.0, "stored": 0.0}

    def forward(net, rows):  # type: ignore[no-untyped-def]
        return net(trials.take(rows))

    for i, fold in enumerate(folds):
        fit_rows, val_rows = validation_split(trials, fold.train, task.protocol, seed)
        sides = ("plain", "stored") if i % 2 == 0 else ("stored", "plain")  # alternate which goes first
        row = {"fold": fold.name}
        for side in sides:
            def make_net(side=side):  # type: ignore[no-untyped-def]
                head = ClassificationHead(int(n_tokens), int(dim), n_classes, "mean", "linear")
                return BackboneClassifier(backbone, head, "lora", 4, frozen_outputs=store if side == "stored" else None)
            started = time.perf_counter()
            trained = fit_classifier(make_net, forward, trials.y, fit_rows, val_rows, lrs=[args.lr],
                                     max_epochs=args.epochs, patience=args.epochs + 1, batch_size=32,
                                     weight_decay=0.01, seed=seed)
            proba = predict(trained.net, forward, fold.test, 32)
            seconds = time.perf_counter() - started
            totals[side] += seconds
            score = score_predictions(trials.y[fold.test], proba.argmax(1), proba, n_classes)["balanced_accuracy"]
            row[f"{side}_s"] = round(seconds, 2)
            row[f"{side}_balanced_accuracy"] = round(float(score), 4)
        row["ratio"] = round(row["plain_s"] / row["stored_s"], 2)
        rows_out.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"task": task.name, "checkpoint": args.checkpoint, "n_trials": len(trials), "folds": len(folds),
                      "epochs": args.epochs, "plain_s": round(totals["plain"], 1), "stored_s": round(totals["stored"], 1),
                      "ratio": round(totals["plain"] / totals["stored"], 2), "store": repr(store),
                      "torch_threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
