"""Cost of finding the sparse network: the whole method's wall time and epochs, as ratios to dense training.

Each method runs once through ``cropkit.run`` on the ``cpu`` profile (digits, the small ``cnn``, 20 epochs of
the sparse phase, sparsity 0.9, seed 0), with the cache disabled and codecarbon off (it does not change the
work, only adds a background thread). ``train_seconds`` is everything the method does: scoring, detection,
surgery and training, every dense phase and every LTR round included. Dense training runs first *and* last;
the reference is the mean of the two, so a drift in the machine's load over the benchmark hits both sides.

    dense         20 epochs, the reference row
    snip          prune at init, 20 epochs
    earlycrop-u   dense until the detector fires (≤ max_dense_epochs), prune with CroP, 20 epochs
    earlycrop-s   the same with CroP-S (physically smaller network after the prune)
    ltr           20 epochs, then ltr_rounds × (prune, rewind, 20 epochs): the cost EarlyCroP avoids

Target (issue 7): EarlyCroP's total cost ≤ 1.2× dense training; LTR's is printed for contrast.
"""
from __future__ import annotations

import pandas as pd

import cropkit
from benchmarks import common

METHODS = ("dense", "earlycrop-u", "earlycrop-s", "ltr", "snip")
TARGET = 1.2
SPARSITY = 0.9


def _run(method: str, profile: str) -> dict:
    result = cropkit.run(method, profile=profile, sparsity=SPARSITY, seed=0, cache=False, progress=False,
                         measure_emissions=False)
    return result.row()


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for _, row in frame.iterrows():
        ax.scatter(row.time_ratio, row.test_acc, s=40)
        ax.annotate(f"{row.method} ({row.epochs_trained} ep)", (row.time_ratio, row.test_acc),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(TARGET, color="C3", ls="--", lw=1, label=f"EarlyCroP target ≤ {TARGET:g}× dense")
    ax.set_xlabel("total wall time ÷ dense training")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"Cost of finding the sparse network (profile {frame.profile.iloc[0]}, sparsity {SPARSITY})")
    ax.legend(fontsize=8)
    common.save_figure(fig, "finding_cost", quick)


def main(quick: bool = False) -> pd.DataFrame:
    profile = "smoke" if quick else "cpu"
    common.header(f"finding cost: whole method ÷ dense training (profile {profile})", quick)
    _run("dense", "smoke")  # untimed warm-up: imports, data loading and first-call costs would land on dense
    order = METHODS + ("dense",)  # dense again at the end: the reference is the mean of both
    rows = [_run(m, profile) for m in common.progress(order, "finding cost")]
    dense_runs = [r for r in rows if r["method"] == "dense"]
    dense_seconds = sum(r["train_seconds"] for r in dense_runs) / len(dense_runs)
    dense_epochs = dense_runs[0]["epochs_trained"]
    frame = pd.DataFrame(rows[:-1])
    frame["dense_seconds_first_last"] = " / ".join(f"{r['train_seconds']:.1f}" for r in dense_runs)
    frame["time_ratio"] = frame.train_seconds / dense_seconds
    frame["epochs_ratio"] = frame.epochs_trained / dense_epochs
    frame["target"] = ["≤ 1.2" if m.startswith("earlycrop") else "" for m in frame.method]
    frame["verdict"] = [common.verdict(t, TARGET, higher_is_better=False) if m.startswith("earlycrop") else ""
                        for m, t in zip(frame.method, frame.time_ratio)]
    common.show(frame, ["method", "test_acc", "weight_sparsity", "node_sparsity", "epochs_trained", "prune_epoch",
                        "train_seconds", "time_ratio", "epochs_ratio", "batch_time_ms", "target", "verdict"])
    print(f"    dense reference: mean of {frame.dense_seconds_first_last.iloc[0]} s (first / last run)")
    for method, message in zip(frame.method, frame.warnings.fillna("")):
        if message:
            print(f"    {method}: {message}")
    common.save(frame, "finding_cost", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
