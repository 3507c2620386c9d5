"""Run the lessons headlessly: papermill with a profile, checked parameters, a time budget, and the JSON back.

    results = cropkit.notebook.execute("notebooks/00_tour.ipynb", profile="smoke", output_dir="outputs/smoke")

Each lesson has one cell tagged ``parameters`` holding plain literals, the ``cpu`` profile's values (``PROFILE``,
``OUTPUT_DIR``, ``EPOCHS``, …); the ``smoke`` and ``paper`` values sit beside it in ``NN_name.profiles.json``
(:mod:`cropkit.lessons.lesson_parameters`). :func:`execute` gives papermill the profile's values with the caller's
parameters on top, all checked before a kernel starts. A lesson writes its figures and key results through
:func:`cropkit.paths.output_file` and :func:`save_results` into ``OUTPUT_DIR``.

The main job runs every lesson in order: ``python -m cropkit.notebook --profile cpu --output outputs`` (what
``./kit main`` runs). A lesson that fails is reported and the job goes on; the summary page lists it with its error,
and the command exits with status 1 at the end. Time budgets are warnings, never errors: a lesson over its profile's
budget is flagged on the summary page (``_over_budget``); only a single cell silent (no output, no progress bar
moving) for :data:`HANG_CAP` times the budget (``--hang-cap`` seconds) is stopped, as a hang. Cells run through
:mod:`cropkit.lessons.watchdog`'s client: a kernel message lost on the way restarts the lesson once (``_watchdog`` in
the results), and a second loss fails it with the reason. Ctrl+C stops the running kernel, writes the summary of the
lessons that finished (the interrupted one listed as such) and exits with status 130.

Where the lessons come from: the checkout's ``notebooks/`` when cropkit runs from a source checkout, else the copies
packaged inside cropkit (``cropkit/lessons/notebooks/``, put there with their sidecars when the wheel is built);
``cropkit lessons DIR`` copies them out.

Every lesson is a jupytext pair (`cropkit.lessons.pairs`, importable from here): ``python -m cropkit.notebook --sync``
syncs every pair.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

from cropkit import paths
from cropkit.experiments.profiles import PROFILES
from cropkit.lessons import lesson_parameters, watchdog
from cropkit.lessons.pages import render_html
from cropkit.lessons.pairs import paired_text, sync
from cropkit.lessons.report import write_summary

BUDGET_S = {"smoke": 180, "cpu": 600, "paper": None}  # seconds per lesson, a warning; smoke = seconds plus kernel start
HANG_CAP = 3  # a single cell silent for HANG_CAP × the budget is a hang (not a slow machine) and is stopped

def _lesson_path(name: str) -> Path:
    """A lesson named for ``--sync``: a path to its .ipynb or .py, or a prefix of a lesson in :func:`lessons_dir`
    (``02``, ``02_rich_to_lazy``). A new lesson's .py (no .ipynb yet) is named by its path: syncing writes its pair."""
    path = Path(name)
    if path.with_suffix(".ipynb").exists() or (path.suffix == ".py" and path.exists()):
        return path
    found = [p for p in notebooks() if p.stem.startswith(name)]
    if len(found) != 1:
        known = ", ".join(p.stem for p in notebooks())
        raise ValueError(f"--sync {name}: {'no lesson' if not found else 'several lessons'} match; give a path to a "
                         f"lesson's .ipynb or .py, or a prefix of one of: {known}")
    return found[0]


def lessons_dir() -> Path:
    """The checkout's ``notebooks/`` when running from a checkout, else the lessons packaged with cropkit."""
    root = paths.checkout()
    return root / "notebooks" if root is not None else paths.PACKAGE / "lessons" / "notebooks"


NOTEBOOK_DIR = lessons_dir()


def notebooks(directory: str | Path | None = None) -> list[Path]:
    """The numbered lessons, in order (from :func:`lessons_dir` unless ``directory`` is given)."""
    return sorted(Path(directory or lessons_dir()).glob("[0-9][0-9]_*.ipynb"))


def copy_lessons(dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy every lesson, with its sidecar of profile values, into ``dest`` (created) and return the copies;
    existing files are kept unless ``overwrite`` (a learner's edited lesson is never replaced silently)."""
    lessons = notebooks()
    if not lessons:
        raise FileNotFoundError(f"no lessons in {lessons_dir()}; this cropkit was installed without them")
    found = [p for lesson in lessons for p in (lesson, lesson_parameters.sidecar(lesson)) if p.exists()]
    dest = paths.ensure_dir(dest)
    clash = [dest / p.name for p in found if (dest / p.name).exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{', '.join(p.name for p in clash)} already in {dest}; pass overwrite=True (--force)")
    return [Path(shutil.copyfile(p, dest / p.name)) for p in found]


# ----------------------------------------------------------------------------- results

def has_outputs(path: str | Path) -> bool:
    """True if a stored notebook carries outputs or execution counts (they must be stripped before commit)."""
    nb = json.loads(Path(path).read_text())
    return any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


def show_markdown(sentences: list[str]) -> str:
    """Show a lesson's prose written from its own results, as a bulleted Markdown list under the cell (plain text
    outside a notebook), and return the text, for the lesson's JSON: numbers a lesson quotes come from its run, so
    they cannot drift from what it printed."""
    text = "\n".join(f"* {s}" for s in sentences)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the lessons' dependencies
        print(text)
        return text
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))
    return text


def save_results(output_dir: str | Path, stem: str, results: dict) -> Path:
    """Write a lesson's key results to ``OUTPUT_DIR/stem.json`` (NaN becomes null) and return the path; a relative
    ``output_dir`` follows :func:`cropkit.paths.lesson_output`."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            return clean(value.item())
        if hasattr(value, "tolist"):
            return clean(value.tolist())
        if isinstance(value, Path):
            return str(value)
        return value

    path = paths.output_file(output_dir, f"{stem}.json")
    path.write_text(json.dumps(clean(results), indent=2, allow_nan=False))
    return path


class Phases:
    """Wall seconds of a lesson's phases: ``phases.done("sweep")`` prints and records the time since the
    previous ``done`` (or since the clock was made). In JupyterLab that includes time spent between cells."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        """Record and print the phase's seconds (returns nothing, so a cell ending in it shows no ``Out[n]``)."""
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        print(f"[phase {name}: {self.seconds[name]:.1f} s]")


# ----------------------------------------------------------------------------- executing

def execute(path: str | Path, profile: str = "smoke", output_dir: str | Path = "outputs",
            parameters: dict | None = None,
            budget_s: float | None = -1, progress: bool = False,
            hang_cap_s: float | None = -1, watchdog_s: float | None = None) -> dict:
    """Execute a lesson under ``profile`` and return the JSON it wrote.

    The lesson runs with its parameters cell's values (the ``cpu`` profile's), then the profile's values from its
    sidecar ``NN_name.profiles.json`` (none for ``cpu`` or without a sidecar), then ``parameters``: the caller's values
    win. ``output_dir`` is resolved against the caller's working directory; the kernel runs in it and the executed copy
    is written there (``output_dir/<stem>.ipynb``). Unknown parameter names and values of the wrong type, in
    ``parameters`` or in the sidecar, raise ``ValueError`` before the kernel starts. ``budget_s`` (default: the
    profile's, ``None``: none) is a warning: a lesson running over it warns and its results say so (``_over_budget``). A
    single cell silent longer than ``hang_cap_s`` (default :data:`HANG_CAP` × the budget; ``None``: no cap; counted from
    its last output) is stopped as a hang. A kernel message lost on the way (:mod:`cropkit.lessons.watchdog`, patience
    ``watchdog_s``) runs the lesson once more; ``_watchdog`` in the results counts restarts and late messages, and a
    second loss raises ``LostMessage``.
    """
    import logging

    import papermill


    # papermill logs every cell at INFO; errors still reach the caller as exceptions.
    logging.getLogger("papermill").setLevel(logging.ERROR)

    path, output_dir = Path(path).resolve(), Path(output_dir).expanduser().resolve()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    declared = lesson_parameters.parameters(path)
    given = {**lesson_parameters.profile_values(path, profile, declared), "PROFILE": profile,
             "OUTPUT_DIR": str(output_dir), **(parameters or {})}
    lesson_parameters.check_parameters(path, given, declared)
    budget_s = BUDGET_S[profile] if budget_s == -1 else budget_s
    if hang_cap_s == -1:
        hang_cap_s = None if budget_s is None else HANG_CAP * budget_s
    hang_cap_s = None if hang_cap_s is None else math.ceil(hang_cap_s)  # nbclient counts whole seconds
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"{path.stem}.json"
    json_path.unlink(missing_ok=True)  # never return a stale result
    start = time.perf_counter()

    def run():
        return papermill.execute_notebook(str(path), str(output_dir / path.name), parameters=given,
                                          kernel_name="python3", cwd=str(output_dir), progress_bar=progress,
                                          execution_timeout=hang_cap_s, log_output=False,
                                          engine_name=watchdog.ENGINE, watchdog_s=watchdog_s or watchdog.WATCHDOG_S)

    _, record = watchdog.run_twice(run, path.name, lambda text: warnings.warn(text, stacklevel=3))
    elapsed = time.perf_counter() - start
    if budget_s is not None and elapsed > budget_s:
        warnings.warn(f"{path.name} took {elapsed:.0f} s under profile {profile!r}; its budget is {budget_s} s",
                      stacklevel=2)
    if not json_path.exists():
        raise RuntimeError(f"{path.name} ran but wrote no {json_path.name}; it must call cropkit.notebook.save_results")
    results = json.loads(json_path.read_text())
    results.setdefault("_seconds", elapsed)
    results["_watchdog"] = record
    if budget_s is not None and elapsed > budget_s:
        results["_over_budget"] = f"took {elapsed:.0f} s, budget {budget_s} s"
    return results


def _error_text(error: BaseException) -> str:
    """One readable paragraph for the summary page: the exception and, for a failed cell, its last lines."""
    name = getattr(error, "ename", None) or type(error).__name__
    value = getattr(error, "evalue", None) or str(error)
    return f"{name}: {value}".strip()


def _run_lesson(path: Path, profile: str, output_dir: Path, say, **options) -> dict:
    """One lesson of the main job: its results, or ``{"_error": …}`` when it failed; its warnings are said."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = execute(path, profile=profile, output_dir=output_dir, progress=True, **options)
        except Exception as error:  # a failed lesson is reported, and the next one still runs
            results = {"_error": _error_text(error), "_seconds": time.perf_counter() - start}
            if getattr(error, "record", None):  # the watchdog's count, for a lesson it gave up on
                results["_watchdog"] = error.record
    for w in caught:
        say(f"  warning: {w.message}")
    seconds = time.perf_counter() - start
    say(f"  FAILED after {seconds:.0f} s: {results['_error']}" if "_error" in results
        else f"  done in {seconds:.0f} s → {output_dir / path.name}")
    executed = output_dir / path.name
    if executed.exists():
        try:
            render_html(executed)
        except Exception as error:  # the page still links the .ipynb
            say(f"  could not render {executed.name} to HTML: {error}")
    return results


def run_all(profile: str = "cpu", output_dir: str | Path = "outputs", only: list[str] | None = None,
            directory: str | Path | None = None, hang_cap_s: float | None = -1,
            watchdog_s: float | None = None) -> dict:
    """The main job: every lesson in order, executed copies, HTML, JSON and ``summary.html`` in
    ``output_dir/<profile>/`` (``output_dir`` resolved against the working directory; ``hang_cap_s`` and
    ``watchdog_s`` as in :func:`execute`).

    Returns ``{stem: results}``; a lesson that failed maps to ``{"_error": "…"}`` and the others still run. Ctrl+C
    stops the running lesson and its kernel (it maps to ``{"_interrupted": "…"}``) and runs no more; the summary of
    what finished is written all the same. No lesson to run (``only`` matching nothing, or none found) raises
    ``ValueError`` before anything is written.
    """
    from tqdm.auto import tqdm


    found = notebooks(directory)
    paths_ = [p for p in found if not only or any(p.stem.startswith(o) for o in only)]
    if not paths_:
        where = directory or lessons_dir()
        raise ValueError(f"no lesson matches {only} in {where}; lessons: {[p.stem for p in found]}" if found
                         else f"no lessons found in {where}")
    output_dir = Path(output_dir).expanduser().resolve() / profile
    summary, start = {}, time.perf_counter()
    try:
        for path in tqdm(paths_, desc=f"lessons ({profile})", unit="nb"):
            tqdm.write(f"→ {path.name}")
            start = time.perf_counter()
            summary[path.stem] = _run_lesson(path, profile, output_dir, tqdm.write, hang_cap_s=hang_cap_s,
                                             watchdog_s=watchdog_s)
    except KeyboardInterrupt:  # papermill has stopped the lesson's kernel on its way out
        stopped = next((p.stem for p in paths_ if p.stem not in summary), None)
        if stopped is not None:
            summary[stopped] = {"_interrupted": f"stopped by Ctrl+C after {time.perf_counter() - start:.0f} s",
                                "_seconds": time.perf_counter() - start}
    try:
        tqdm.write(f"summary → {write_summary(output_dir, summary, profile)}")
    except OSError as error:
        tqdm.write(f"could not write the summary in {output_dir}: {error}; an earlier summary.html there is "
                   "left as it was")
    failed = [stem for stem, r in summary.items() if "_error" in r]
    if failed:
        tqdm.write(f"{len(failed)} of {len(summary)} lessons failed: {', '.join(failed)}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cropkit.notebook",
                                     description="Execute cropkit's lessons headlessly with papermill.")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--output", default="outputs",
                        help="output folder, relative to the current directory (default: outputs)")
    parser.add_argument("--only", nargs="*", help="lesson prefixes to run, e.g. 00 02")
    parser.add_argument("--hang-cap", type=float, metavar="SECONDS",
                        help=f"stop a single cell silent this long (no output, no progress), as a hang (default: "
                             f"{HANG_CAP} × the profile's time budget; 0: never)")
    parser.add_argument("--sync", nargs="*", metavar="LESSON",
                        help="run nothing: sync each lesson's .ipynb with its .py (the newer wins), strip outputs, "
                             "number new cells and reset the install cell (all lessons if none is named)")
    args = parser.parse_args(argv)
    if args.sync is not None:
        try:
            chosen = [_lesson_path(name) for name in args.sync] or notebooks()
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        changed = [p for p in dict.fromkeys(Path(p).with_suffix(".ipynb") for p in chosen) if sync(p)]
        for p in changed:
            print(f"synced {p} and {paired_text(p).name}")
        return 0
    if args.only == []:
        print("error: --only needs at least one lesson prefix, e.g. --only 00 02", file=sys.stderr)
        return 2
    cap = -1 if args.hang_cap is None else (args.hang_cap or None)
    try:
        summary = run_all(args.profile, args.output, args.only, hang_cap_s=cap)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stopped = [stem for stem, r in summary.items() if "_interrupted" in r]
    if stopped:
        print(f"interrupted: {stopped[0]} stopped by Ctrl+C, its kernel with it; the summary lists the "
              f"{len(summary) - 1} lesson(s) that finished", file=sys.stderr)
        return 130
    return 1 if any("_error" in r for r in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
