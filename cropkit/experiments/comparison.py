"""Many methods over many seeds: the paper's table (one line per method, cells mean ± std over seeds).

    table = cropkit.compare(["dense", "snap", "earlycrop-s"], sparsity=0.9, seeds=(0, 1, 2))
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from cropkit.experiments import grid
from cropkit.experiments.results import paper_table, save_table
from cropkit.experiments.runs import cpus
from cropkit.methods.options import DEFAULT_SPARSITY, check_int
from cropkit.methods.registry import FAMILIES, LABELS, METHODS
from cropkit.training import loop as train


def compare(methods: Sequence[str] = METHODS, data: str | None = None, model: str | None = None,
            sparsity: float = DEFAULT_SPARSITY, seeds: Sequence[int] | None = None, profile: str = "cpu",
            epochs: int | None = None, width: float | None = None, cache: bool = True,
            cache_dir: str | Path | None = None, progress: bool = True, aggregate: bool = True, workers: int = 1,
            device: str | None = None, callbacks: Sequence[train.Callback] = (), pin_memory: bool | None = None,
            threads: int | None = None, **options):
    """Run every method over every seed; returns the paper's table (one line per method, in the order given,
    cells 'mean ± std' over seeds, see `cropkit.experiments.results.paper_table`) with the per-run rows in
    ``table.attrs["runs"]``, or with ``aggregate=False`` the per-run frame itself. ``seeds=None`` = the
    profile's seeds; a seed given twice is an error. Other arguments as in :func:`run`; all are validated
    before the first run starts.

    ``workers > 1`` runs that many runs at once in separate processes, splitting the CPUs among them (``threads``
    torch threads each; None = `cropkit.experiments.runs.cpus` ÷ workers; small networks use two cores better as two
    one-thread runs than as one two-thread run). A CPU run's threads are in its cache key (`cropkit.run`), so
    its result is the one a run with those threads gives; the time columns are measured with the other workers
    busy beside them. Runs already cached replay here, without starting workers. Ctrl+C stops every worker at
    once; each finished run is already cached, so the same call resumes where it stopped.

    ``callbacks`` go to every run (`cropkit.run`: they observe, and a cached run replays without them); with
    ``workers > 1`` each worker gets a pickled copy, so they must pickle (`cropkit.training.tracking.TensorBoard` does).
    """
    import pandas as pd

    check_int("workers", workers, 1)
    if threads is None and workers > 1:
        threads = max(1, cpus() // workers)
    train.resolve_device(device)
    if workers > 1:
        grid.check_callbacks(callbacks, remedy="run them with workers=1, or ")
    start = time.perf_counter()
    jobs = grid.plan(methods, [sparsity], seeds, profile=profile, cache=cache, cache_dir=cache_dir, data=data,
                     model=model, epochs=epochs, width=width, device=device, callbacks=list(callbacks),
                     pin_memory=pin_memory, threads=threads, progress=progress and workers == 1, **options)
    results = grid.execute(jobs, "processes" if workers > 1 else "here", workers=workers, progress=progress)
    rows = [result.row() for result in results]
    if not aggregate:
        return pd.DataFrame(rows)
    return table(rows, sparsity=sparsity, seeds=list(dict.fromkeys(job.seed for job in jobs)),
                 profile=profile, workers=workers, wall_seconds=time.perf_counter() - start)


def table(rows: list[dict], **setting):
    """The paper's table of ``rows`` (one per run, `cropkit.Result.row`; one sparsity) with its setting in
    ``table.attrs["setting"]``: what :func:`compare` returns, and `cropkit.sweep` writes."""
    table = paper_table(rows, LABELS, FAMILIES)
    table.attrs["setting"] = dict(data=rows[0]["dataset"], model=rows[0]["model"], **setting)
    return table


def markdown(frame) -> str:
    """A frame as a Markdown table (index first)."""
    frame = frame.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(jobs, rows: list[dict], folder: Path, sparsities, **setting):
    """The paper's table (:func:`table`) at each of ``sparsities`` of ``jobs`` (`cropkit.experiments.grid.Job`;
    ``rows`` are their rows, in their order), each written into ``folder`` as ``table-p<percent>.md``, ``.csv``
    and ``_runs.csv`` (``table-p90.md`` for 0.9); returns them in one frame indexed by (sparsity, method)."""
    import pandas as pd


    tables = {}
    for sparsity in sparsities:  # dense (at 0) is in every table
        mine = [row for job, row in zip(jobs, rows) if job.sparsity == sparsity or job.method == "dense"]
        tables[sparsity] = table(mine, sparsity=sparsity, **setting)
        stem = folder / f"table-p{100 * sparsity:g}"  # table-p90: the sparsity in percent
        save_table(tables[sparsity], f"{stem}.csv")
        Path(f"{stem}.md").write_text(markdown(tables[sparsity].drop(columns=["Type"])))
        print(f"wrote {stem}.md and {stem.name}.csv")
    frame = pd.concat(tables, names=["sparsity"])
    frame.attrs["runs"] = [r for t in tables.values() for r in t.attrs["runs"]]
    return frame
