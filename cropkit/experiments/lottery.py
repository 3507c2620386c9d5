"""Lottery tickets against early pruning (lesson 03): sweeps over sparsity, LTR round by round, costs.

    jobs = grid.plan(["dense", "ltr", "ltr-reinit", "earlycrop-u", "snip"], sparsities=(0.5, 0.9), seeds=(0,))
    results = grid.execute(jobs)
    frame = lottery.frame(jobs, results)   # one row per run, "method" names the entry (ltr-reinit too)
    rounds = lottery.rounds(results)       # LTR's test accuracy after every training, per run

The entries ``ltr-reinit`` (LTR with the survivors re-initialised at random instead of rewound, Frankle & Carbin's
control) and ``earlycrop-u-magnitude`` (pruning when EarlyCroP's detector fires but by |θ_t| instead of CroP, to
tell *when* from *how*) are named variants of `cropkit.methods.registry.VARIANTS`.

LTR as `cropkit.methods.ltr` defines it: one training of ``epochs`` E, then R = ``ltr_rounds`` rounds of
prune → rewind → retrain for E epochs, round r pruning to the cumulative sparsity 1 − (1 − p)^(r/R). It trains
R + 1 times, so ``epochs_trained = (R + 1) · E`` where an at-init method trains E and EarlyCroP t + E.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cropkit.core import schedules
from cropkit.experiments import runs
from cropkit.methods.registry import LABELS, entry_of

if TYPE_CHECKING:  # annotations only: pandas loads when a table is made
    import pandas

def warm_up(**run_options) -> None:
    """One untimed, uncached dense epoch, so that the first timed run does not pay PyTorch's one-time start-up
    costs (kernel selection, lazy imports, the profiler behind the memory measurement)."""
    options = {k: v for k, v in run_options.items() if k not in ("cache", "epochs")}
    runs.run("dense", epochs=1, cache=False, progress=False, **options)


def frame(jobs, results) -> "pandas.DataFrame":
    """One row per run of a grid (`cropkit.experiments.grid`: its jobs and their results), ``method`` holding the
    entry's name (``ltr-reinit`` too), ``label`` its name in the tables."""
    import pandas as pd

    return pd.DataFrame([{**result.row(), "method": job.entry, "label": LABELS[job.entry]}
                         for job, result in zip(jobs, results)])


def round_targets(sparsity: float, rounds: int) -> list[float]:
    """LTR's cumulative sparsity after each training: 0 for the first (dense) one, then 1 − (1 − p)^(r/R)."""
    return [schedules.geometric(sparsity, r, rounds) for r in range(rounds + 1)]


def ltr_rounds(result) -> list[dict]:
    """LTR's trainings of one run: round (0 = the dense training before any pruning), the sparsity it trained at,
    its epochs, and its final and best test accuracy, read from the run's per-epoch history."""
    if result.method != "ltr":
        raise ValueError(f"ltr_rounds reads an LTR run; got a {result.method!r} run")
    targets = round_targets(result.target_sparsity, result.config["ltr_rounds"])
    table = []
    entry = entry_of(result.method, result.config)
    for r, target in enumerate(targets):
        epochs = [e for e in result.history if e["training"] == r]
        table.append(dict(method=entry, target_sparsity=result.target_sparsity, seed=result.seed, round=r,
                          round_sparsity=target, epochs=len(epochs), test_acc=epochs[-1]["test_acc"],
                          best_test_acc=max(e["test_acc"] for e in epochs)))
    return table


def rounds(results) -> "pandas.DataFrame":
    """`ltr_rounds` of every LTR run (rewound and re-initialised) among ``results``, as one frame."""
    import pandas as pd

    return pd.DataFrame([row for r in results if r.method == "ltr" for row in ltr_rounds(r)])


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: none is at most as costly and at least as accurate with one
    of the two strictly better. Sorted by cost."""
    points = list(zip(costs, accuracies))
    front = [i for i, (c, a) in enumerate(points)
             if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def mean_std(frame, value: str, by: Sequence[str] = ("method", "target_sparsity")) -> "pandas.DataFrame":
    """Mean, sample std (0 for one seed) and count of ``value`` per group, groups in first-seen order."""
    grouped = frame.groupby(list(by), sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def gap(summary, a: str, b: str) -> "pandas.DataFrame":
    """Per target sparsity: mean accuracy of entry ``a`` minus that of ``b`` (from :func:`mean_std`), the seed
    spread √(std_a² + std_b²) it should be read against, and a verdict naming who is ahead or calling a tie when
    the difference is within the spread. With one seed there is no spread: any difference names a leader."""
    import pandas as pd

    rows = []
    for sparsity in dict.fromkeys(summary["target_sparsity"]):
        at = summary[summary["target_sparsity"] == sparsity].set_index("method")
        if a not in at.index or b not in at.index:
            continue
        diff = at.loc[a, "mean"] - at.loc[b, "mean"]
        spread = (at.loc[a, "std"] ** 2 + at.loc[b, "std"] ** 2) ** 0.5
        leader = LABELS.get(a, a) if diff > 0 else LABELS.get(b, b)
        verdict = "tie within the seed spread" if abs(diff) <= spread else f"{leader} ahead"
        rows.append(dict(target_sparsity=sparsity, a=a, b=b, difference=diff, spread=spread, verdict=verdict))
    return pd.DataFrame(rows)
