"""Cost of finding the sparse network: the whole method's wall time and epochs, as ratios to dense training.

Each method runs once through ``cropkit.run`` on the ``cpu`` profile (digits, the small ``cnn``, 20 epochs of
the sparse phase, sparsity 0.9, seed 0), with the cache disabled and codecarbon off (it does not change the
work, only adds a background thread). ``train_seconds`` is everything the method does: scoring, detection,
surgery and training, every dense phase and every LTR round included. Every method but LTR runs twice, in
the palindromic order ``ORDER``, and its time is the mean of both runs (a run repeats exactly: same seed).

    dense         20 epochs, the reference row
    snip          prune at init, 20 epochs
    earlycrop-u   dense until the detector fires (≤ max_dense_epochs), prune with CroP, 20 epochs
    earlycrop-s   the same with CroP-S (physically smaller network after the prune)
    ltr           20 epochs, then ltr_rounds × (prune, rewind, 20 epochs): the cost EarlyCroP avoids

Target (issue 7): EarlyCroP's total cost ≤ 1.2× dense training; LTR's is printed for contrast.
"""
from __future__ import annotations

import warnings

import pandas as pd

import cropkit
from benchmarks import common

METHODS = ("dense", "earlycrop-u", "earlycrop-s", "ltr", "snip")
# Palindromic order: every method but LTR (5 trainings, shown for contrast) runs twice, mirrored around LTR,
# and its time is the mean of both runs, so a drift in the machine's load hits every method alike.
ORDER = ("dense", "earlycrop-u", "earlycrop-s", "snip", "ltr", "snip", "earlycrop-s", "earlycrop-u", "dense")
TARGET = 1.2
SPARSITY = 0.9


def _run(method: str, profile: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run records its warnings; main prints them once, under the table
        result = cropkit.run(method, profile=profile, sparsity=SPARSITY, seed=0, cache=False, progress=False,
                             measure_emissions=False)
    return result.row()


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (_, row) in enumerate(frame.iterrows()):
        ax.scatter(row.time_ratio, row.test_acc, s=40)
        ax.annotate(f"{row.method} ({row.epochs_trained} ep)", (row.time_ratio, row.test_acc),
                    textcoords="offset points", xytext=(5, (4, -9, 14)[i % 3]), fontsize=8)
    ax.axvline(TARGET, color="C3", ls="--", lw=1, label=f"EarlyCroP target ≤ {TARGET:g}× dense")
    ax.set_xlabel("total wall time ÷ dense training")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"Cost of finding the sparse network (profile {frame.profile.iloc[0]}, sparsity {SPARSITY})")
    ax.legend(fontsize=8)
    common.save_figure(fig, "finding_cost", quick)


def summary(frame: pd.DataFrame) -> list[str]:
    ratio = dict(zip(frame.method, frame.time_ratio))
    return [f"EarlyCroP ÷ dense training (target ≤ {TARGET:g}): -U {ratio['earlycrop-u']:.2f} (masked layers; no "
            f"sparse kernels, see sparse_kernels), -S {ratio['earlycrop-s']:.2f}; LTR {ratio['ltr']:.2f}"]


def main(quick: bool = False) -> pd.DataFrame:
    profile = "smoke" if quick else "cpu"
    common.header(f"finding cost: whole method ÷ dense training (profile {profile})", quick)
    _run("dense", "smoke")  # untimed warm-up: imports, data loading and first-call costs would land on dense
    rows = [_run(m, profile) for m in common.progress(ORDER, "finding cost")]
    seconds = {m: [r["train_seconds"] for r in rows if r["method"] == m] for m in METHODS}
    first = {}
    for r in rows:
        first.setdefault(r["method"], r)  # same seed, same work: only the time differs between repeats
    frame = pd.DataFrame([first[m] for m in METHODS])
    frame["runs_seconds"] = [" / ".join(f"{t:.1f}" for t in seconds[m]) for m in METHODS]
    frame["train_seconds"] = [sum(seconds[m]) / len(seconds[m]) for m in METHODS]
    dense_seconds, dense_epochs = frame.train_seconds.iloc[0], frame.epochs_trained.iloc[0]
    frame["time_ratio"] = frame.train_seconds / dense_seconds
    frame["epochs_ratio"] = frame.epochs_trained / dense_epochs
    frame["target"] = ["≤ 1.2" if m.startswith("earlycrop") else "" for m in frame.method]
    frame["verdict"] = [common.verdict(t, TARGET, higher_is_better=False) if m.startswith("earlycrop") else ""
                        for m, t in zip(frame.method, frame.time_ratio)]
    common.show(frame, ["method", "test_acc", "weight_sparsity", "node_sparsity", "epochs_trained", "prune_epoch",
                        "train_seconds", "time_ratio", "epochs_ratio", "target", "verdict"])
    print("    seconds of each run (palindromic order, so load drift hits every method alike): "
          + "; ".join(f"{m} {t}" for m, t in zip(frame.method, frame.runs_seconds)))
    for method, message in zip(frame.method, frame.warnings.fillna("")):
        if message:
            print(f"    {method}: {message}")
    common.save(frame, "finding_cost", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
