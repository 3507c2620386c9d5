"""Lottery tickets against early pruning (lesson 03): sweeps over sparsity, LTR round by round, costs.

    results = cropkit.lottery.sweep(["ltr", "ltr-reinit", "earlycrop-u", "snip"], sparsities=(0.5, 0.9), seeds=(0,))
    frame = cropkit.lottery.frame(results)          # one row per run, "method" names the entry (ltr-reinit too)
    rounds = cropkit.lottery.rounds(results)        # LTR's test accuracy after every training, per run

An *entry* is a method of `cropkit.METHODS` or a named variant of one: ``ltr-reinit`` is LTR with the survivors
re-initialised at random instead of rewound (Frankle & Carbin's control, `cropkit.run(..., reinit=True)`);
``earlycrop-u-magnitude`` prunes when EarlyCroP's detector fires but by |θ_t| instead of CroP
(`cropkit.run("earlycrop-u", criterion="magnitude")`), to tell *when* from *how*.

LTR as `cropkit.methods.registry.ltr` defines it: one training of ``epochs`` E, then R = ``ltr_rounds`` rounds of
prune → rewind → retrain for E epochs, round r pruning to the cumulative sparsity 1 − (1 − p)^(r/R). It trains
R + 1 times, so ``epochs_trained = (R + 1) · E`` where an at-init method trains E and EarlyCroP t + E.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cropkit.experiments import runs
from cropkit.experiments.runs import replay
from cropkit.methods import registry as methods_lib

if TYPE_CHECKING:  # annotations only: pandas loads when a table is made
    import pandas

# Named variants: entry → (method, options of cropkit.run)
VARIANTS: dict[str, tuple[str, dict]] = {"ltr-reinit": ("ltr", {"reinit": True}),
                                         "earlycrop-u-magnitude": ("earlycrop-u", {"criterion": "magnitude"})}
LABELS = {**methods_lib.LABELS, "ltr-reinit": "LTR, random reinit",
          "earlycrop-u-magnitude": "EarlyCroP timing, magnitude"}
FAMILIES = {**methods_lib.FAMILIES, "ltr-reinit": "Unstructured", "earlycrop-u-magnitude": "Unstructured"}


def resolve(entry: str) -> tuple[str, dict]:
    """(method, extra options of `cropkit.run`) of an entry; unknown names raise ``ValueError``."""
    if entry in VARIANTS:
        return VARIANTS[entry]
    if entry in methods_lib.REGISTRY:
        return entry, {}
    raise ValueError(f"unknown entry {entry!r}; choose a method of cropkit.METHODS {list(methods_lib.METHODS)} "
                     f"or a variant {list(VARIANTS)}")


def entry_of(result) -> str:
    """The entry a `cropkit.Result` belongs to (``ltr-reinit`` is told apart by its configuration)."""
    for entry, (method, options) in VARIANTS.items():
        if result.method == method and all(result.config.get(k) == v for k, v in options.items()):
            return entry
    return result.method


def warm_up(**run_options) -> None:
    """One untimed, uncached dense epoch, so that the first timed run does not pay PyTorch's one-time start-up
    costs (kernel selection, lazy imports, the profiler behind the memory measurement)."""
    options = {k: v for k, v in run_options.items() if k not in ("cache", "epochs")}
    runs.run("dense", epochs=1, cache=False, progress=False, **options)


def is_cached(method: str, sparsity: float, seed: int, **run_options) -> bool:
    """True when `cropkit.run` would replay this run from its cache instead of training."""

    return replay(method, sparsity=sparsity, seed=seed, **run_options) is not None


def sweep(entries: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int], *, progress: bool = True,
          **run_options) -> list:
    """`cropkit.run` for every entry × sparsity × seed (``dense`` once per seed, at sparsity 0); a list of Results.

    ``run_options`` go to every run (profile, data, model, epochs, cache, ltr_rounds, …). Every name is checked
    before the first run starts, and :func:`warm_up` runs before it unless every run replays from the cache.
    """
    from tqdm.auto import tqdm

    plan = []
    for entry in entries:
        method, options = resolve(entry)
        for sparsity in ([0.0] if method == "dense" else sparsities):
            plan += [(method, sparsity, seed, options) for seed in seeds]
    for method, _, _, options in plan:
        run_settings = {k: v for k, v in run_options.items()
                        if k not in ("cache", "cache_dir", "device", "root", "threads")}
        runs.settings(method, **options, **run_settings)
    if not all(is_cached(method, sparsity, seed, **options, **run_options) for method, sparsity, seed, options in plan):
        warm_up(**run_options)
    results = []
    for method, sparsity, seed, options in tqdm(plan, desc="runs", unit="run", disable=not progress):
        results.append(runs.run(method, sparsity=sparsity, seed=seed, progress=False,
                                       **options, **run_options))
    return results


def frame(results) -> "pandas.DataFrame":
    """One row per run (`Result.row`), ``method`` holding the entry name, ``label`` its name in the tables."""
    import pandas as pd

    rows = []
    for result in results:
        row = result.row()
        row["method"] = entry_of(result)
        row["label"] = LABELS[row["method"]]
        rows.append(row)
    return pd.DataFrame(rows)


def round_targets(sparsity: float, rounds: int) -> list[float]:
    """LTR's cumulative sparsity after each training: 0 for the first (dense) one, then 1 − (1 − p)^(r/R)."""
    return [0.0] + [1 - (1 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


def ltr_rounds(result) -> list[dict]:
    """LTR's trainings of one run: round (0 = the dense training before any pruning), the sparsity it trained at,
    its epochs, and its final and best test accuracy, read from the run's per-epoch history."""
    if result.method != "ltr":
        raise ValueError(f"ltr_rounds reads an LTR run; got a {result.method!r} run")
    targets = round_targets(result.target_sparsity, result.config["ltr_rounds"])
    table = []
    for r, target in enumerate(targets):
        epochs = [e for e in result.history if e["training"] == r]
        table.append(dict(method=entry_of(result), target_sparsity=result.target_sparsity, seed=result.seed,
                          round=r, round_sparsity=target, epochs=len(epochs), test_acc=epochs[-1]["test_acc"],
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
