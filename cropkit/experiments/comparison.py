"""Many methods over many seeds: the paper's table (one line per method, cells mean ± std over seeds).

    table = cropkit.compare(["dense", "snap", "earlycrop-s"], sparsity=0.9, seeds=(0, 1, 2))
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

from cropkit.experiments import profiles
from cropkit.experiments.results import default_cache_dir, paper_table, save_table
from cropkit.experiments.runs import check_method, cpus, replay, run, settings
from cropkit.methods.options import check_int, check_seed, check_sparsity
from cropkit.methods.registry import FAMILIES, LABELS, METHODS
from cropkit.paths import unwritable
from cropkit.training import loop as train


def _start_worker() -> None:
    """A worker process of :func:`compare`: Ctrl+C is the parent's to handle."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _row_in_worker(job: dict) -> dict:
    """One run in a worker process of :func:`compare`; the run stores its own result in the cache."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a worker's warnings cannot reach the user; the result records them
        return run(**job).row()


def _rows_in_workers(jobs: list[dict], workers: int, bar) -> list[dict]:
    """The rows of ``jobs`` run ``workers`` at a time in spawned processes. An error or Ctrl+C (KeyboardInterrupt)
    ends every worker at once; the runs that finished are already in the cache."""
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker)
    try:
        rows = []
        for row in pool.imap(_row_in_worker, jobs):
            rows.append(row)
            bar.update(1)
        pool.close()
        return rows
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def compare(methods: Sequence[str] = METHODS, data: str | None = None, model: str | None = None,
            sparsity: float = 0.9, seeds: Sequence[int] | None = None, profile: str = "cpu",
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

    methods = [methods] if isinstance(methods, str) else list(methods)
    check_methods(methods)
    seeds = check_seeds(profiles.settings("run", profile).seeds if seeds is None else seeds)
    check_int("workers", workers, 1)
    if threads is not None:
        check_int("threads", threads, 1)
    elif workers > 1:
        threads = max(1, cpus() // workers)
    train.resolve_device(device)
    for method in methods:  # fail on a typo before hours of training, not after
        settings(method, data=data, model=model, epochs=epochs, width=width, profile=profile, **options)
    check_sparsity(sparsity)
    check_callbacks(callbacks, workers)
    reason = unwritable(cache_dir or default_cache_dir(), folder=True) if cache else None
    if reason:  # said once here: a worker's own warning would not reach the user
        warnings.warn(f"results cannot be cached in {cache_dir or default_cache_dir()} ({reason}); every run is "
                      f"returned, but will happen again next time", stacklevel=2)
    jobs = [dict(method=method, data=data, model=model, sparsity=sparsity, epochs=epochs, seed=seed, profile=profile,
                 width=width, cache=cache, cache_dir=cache_dir, progress=progress and workers == 1, device=device,
                 callbacks=list(callbacks), pin_memory=pin_memory, threads=threads, **options)
            for method in methods for seed in seeds]
    start = time.perf_counter()
    rows = _rows(jobs, workers, progress)
    if not aggregate:
        return pd.DataFrame(rows)
    return table(rows, sparsity=sparsity, seeds=list(seeds), profile=profile, workers=workers,
                 wall_seconds=time.perf_counter() - start)


def table(rows: list[dict], **setting):
    """The paper's table of ``rows`` (one per run, `cropkit.Result.row`; one sparsity) with its setting in
    ``table.attrs["setting"]``: what :func:`compare` returns, and `cropkit.sweep` writes."""
    table = paper_table(rows, LABELS, FAMILIES)
    table.attrs["setting"] = dict(data=rows[0]["dataset"], model=rows[0]["model"], **setting)
    return table


def check_callbacks(callbacks, workers: int, remedy: str = "run them with workers=1, or ") -> None:
    """Worker processes get pickled copies of the callbacks: one that does not pickle is refused before any run."""
    import pickle

    if workers == 1:
        return
    try:
        pickle.dumps(list(callbacks))
    except Exception as err:  # PicklingError, AttributeError (a local class), TypeError (an open file) ...
        raise ValueError(f"callbacks cannot be sent to worker processes ({type(err).__name__}: {err}); {remedy}"
                         f"give callbacks that pickle (defined at a module's top level, holding no open "
                         f"files)") from None


def check_seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("compare needs at least one seed")
    for seed in seeds:
        check_seed(seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds {list(seeds)} repeat {repeated}: a repeated seed is the same run again and would "
                         f"count twice in the mean ± std; give distinct seeds")
    return seeds


def check_methods(methods: list[str]) -> None:
    if not methods:
        raise ValueError(f"compare needs at least one method; choose from {list(METHODS)}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ValueError(f"methods {list(methods)} repeat {repeated}; give each method once")
    for method in methods:
        check_method(method)


def _rows(jobs: list[dict], workers: int, progress: bool) -> list[dict]:
    """The row of every job, one after the other here, or ``workers`` at a time in worker processes."""
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress) as bar:
        if workers > 1:
            cached = [replay(**job) for job in jobs]  # keyed as the workers key them: their threads are the job's
            bar.update(sum(r is not None for r in cached))
            todo = [job for job, r in zip(jobs, cached) if r is None]
            ran = iter(_rows_in_workers(todo, workers, bar) if todo else [])
            return [r.row() if r is not None else next(ran) for r in cached]
        rows = []
        for job in jobs:
            bar.set_postfix_str(f"{job['method']} seed {job['seed']}")
            rows.append(run(**job).row())
            bar.update(1)
        return rows


def markdown(frame) -> str:
    """A frame as a Markdown table (index first)."""
    frame = frame.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(jobs, rows: list[dict], folder: Path, **setting):
    """The paper's table (:func:`table`) of every sparsity of ``jobs`` (`cropkit.experiments.sweeps.Job`; ``rows`` are
    their
    rows, in their order), each written into ``folder`` as ``table-p<percent>.md``, ``.csv`` and ``_runs.csv``
    (``table-p90.md`` for 0.9); returns them in one frame indexed by (sparsity, method)."""
    import pandas as pd


    tables = {}
    for sparsity in dict.fromkeys(job.sparsity for job in jobs):
        mine = [row for job, row in zip(jobs, rows) if job.sparsity == sparsity]
        tables[sparsity] = table(mine, sparsity=sparsity, **setting)
        stem = folder / f"table-p{100 * sparsity:g}"  # table-p90: the sparsity in percent
        save_table(tables[sparsity], f"{stem}.csv")
        Path(f"{stem}.md").write_text(markdown(tables[sparsity].drop(columns=["Type"])))
        print(f"wrote {stem}.md and {stem.name}.csv")
    frame = pd.concat(tables, names=["sparsity"])
    frame.attrs["runs"] = [r for t in tables.values() for r in t.attrs["runs"]]
    return frame
