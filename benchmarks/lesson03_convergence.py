"""Issue 20: does lesson 03's sparse phase converge, and how many epochs after pruning would it need?

Runs lesson 03's own settings (its parameters cell, the ``cpu`` profile: ``mnist1d``, ``cnn`` ×0.5, batch 128, the
reference rule at τ = 0.7, one torch thread) for a few methods at one sparsity and several sparse-phase lengths E,
and prints each run's test accuracy and its training loss at the end beside dense's. A row whose loss still falls
from one E to the next had not converged at the shorter one.

    python benchmarks/lesson03_convergence.py                               # E = 6 20 40, seed 0, 90 %, lesson's lr
    python benchmarks/lesson03_convergence.py --epochs 6 20 40 80 --lr 0.002   # the cpu profile's learning rate

What it found (seed 0, 90 %, one thread on a 2-core CPU; 2026-12-03): test accuracy / training loss at the end

=====================  ============  ============  ============  ============  ==============
method                 E = 6         E = 20        E = 40        E = 80        E = 20, lr 0.02
=====================  ============  ============  ============  ============  ==============
dense                  86.8 / 0.410  95.9 / 0.040  96.4 / 0.009  96.5 / 0.002  97.6 / 0.002
CroP-U (at init)       39.4 / 1.609  74.9 / 0.727  90.6 / 0.268  93.9 / 0.073  95.7 / 0.055
EarlyCroP-U            48.3 / 1.552  61.8 / 1.000  68.2 / 0.652  73.8 / 0.418  96.0 / 0.037
magnitude at θ_t       73.4 / 0.791  85.8 / 0.341  91.2 / 0.143  91.8 / 0.049  95.3 / 0.019
=====================  ============  ============  ============  ============  ==============

At the profile's 2e-3 (the first four columns) dense has converged by E = 20 while every pruned row still learns at
40, and EarlyCroP-U still at 80; the ordering of *when* changes with E: at 6 epochs EarlyCroP-U is ahead of CroP at
initialisation (48.3 vs 39.4), from 20 on it is far behind (73.8 vs 93.9 at 80). At a peak learning rate of 0.02 every
row converges in 20 epochs and EarlyCroP-U lands level with CroP at initialisation. Lesson 03 therefore trains at
0.02 for E = 20 (its `LR` and `EPOCHS`), which fits its 600 s budget with two runs at a time. CroP at θ_t keeps about
1 % of the flatten → Linear layer that holds 77 % of the weights (lesson 03's layer table); magnitude at the same θ_t
does not starve it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

import cropkit as ck
from cropkit.lessons.lesson_parameters import parameters

LESSON = Path(__file__).resolve().parent.parent / "notebooks" / "03_lottery_vs_earlycrop.ipynb"
METHODS = ("dense", "crop-u", "earlycrop-u", "earlycrop-u:magnitude")  # method[:criterion applied at θ_t]


def lesson_options() -> dict:
    """Lesson 03's run options, from its parameters cell (the cpu profile's values)."""
    p = {name: spec["default"] for name, spec in parameters(LESSON).items()}
    return dict(profile="cpu", data=p["DATA"], model=p["MODEL"], width=p["WIDTH"], batch_size=p["BATCH_SIZE"],
                lr=p["LR"], limit=p["LIMIT"], score_batches=p["SCORE_BATCHES"], max_dense_epochs=p["MAX_DENSE_EPOCHS"],
                rule=p["RULE"], threshold=p["THRESHOLD"], ltr_rounds=p["LTR_ROUNDS"],
                rewind_epoch=p["REWIND_EPOCH"], measure_emissions=False, threads=p["THREADS"] or 1)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[6, 20, 40], help="sparse-phase lengths E")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--lr", type=float, nargs="+", default=None,
                        help="peak learning rates to try (default: the lesson's LR)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="method[:criterion at θ_t]")
    args = parser.parse_args(argv)
    options = lesson_options()
    torch.set_num_threads(options["threads"])
    rows = []
    for lr in args.lr or [options["lr"]]:
        for epochs in args.epochs:
            for entry in args.methods:
                method, _, criterion = entry.partition(":")
                for seed in args.seeds:
                    extra = {"criterion": criterion} if criterion else {}
                    r = ck.run(method, sparsity=0.0 if method == "dense" else args.sparsity, seed=seed, epochs=epochs,
                               progress=False, **{**options, "lr": lr}, **extra)
                    rows.append(dict(method=entry, lr=r.config["lr"], E=epochs, seed=seed, test_acc=r.test_acc,
                                     train_loss_end=r.history[-1]["train_loss"], epochs_trained=r.epochs_trained,
                                     from_cache=r.from_cache))
                    loss = r.history[-1]["train_loss"]
                    print(f"{entry:>22}  lr {r.config['lr']:g}  E = {epochs:>3}  seed {seed}: test acc "
                          f"{r.test_acc:.1%}, training loss at the end {loss:.3f} ({r.epochs_trained} epochs in all)",
                          flush=True)
    table = (pd.DataFrame(rows).groupby(["method", "lr", "E"], sort=False)
             .agg(test_acc=("test_acc", "mean"), train_loss_end=("train_loss_end", "mean"), seeds=("seed", "size")))
    print(f"\nat {args.sparsity:.0%}, lesson 03's settings, on {ck.hardware.describe()}:")
    print(table.round(3).to_string())
    return table


if __name__ == "__main__":
    main()
