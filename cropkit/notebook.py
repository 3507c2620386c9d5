"""Run the lessons headlessly: papermill with a profile, checked parameters, a time budget, and the JSON back.

    results = cropkit.notebook.execute("notebooks/00_tour.ipynb", profile="smoke", output_dir="outputs/smoke")

Each lesson has one cell tagged ``parameters`` holding plain literals (``PROFILE``, ``OUTPUT_DIR``, …), one per line
with a comment that papermill shows as its help (``papermill --help-notebook``). It writes its figures and key
results through :func:`cropkit.paths.output_file` and :func:`save_results` into ``OUTPUT_DIR``. papermill only
*warns* about parameter names a notebook does not declare and never checks types; :func:`execute` rejects both
before a kernel starts. A parameter's type is the one its papermill type comment names (``EPOCHS = None  # type:
int  training epochs``), else its default's; an ``int`` is accepted for a ``float`` and a tuple for a list, and a
parameter whose default is ``None`` ("the profile's value") also takes ``None``. A comment must hold no ``=``: papermill
skips such a line, and :func:`parameters` refuses it.

The main job runs every lesson in order: ``python -m cropkit.notebook --profile cpu --output outputs`` (what
``./kit main`` runs). A lesson that fails is reported and the job goes on; the summary page lists it with its
error, and the command exits with status 1 at the end. There the per-lesson budget is a warning, with a hard cap
of :data:`HARD_CAP` times the budget per cell against hangs; :func:`execute` on its own keeps it a hard limit.

Where the lessons come from: the checkout's ``notebooks/`` when cropkit runs from a source checkout, else the copies
packaged inside cropkit (``cropkit/lessons/``, put there when the wheel is built); ``cropkit lessons DIR`` copies
them out.

Every lesson is a jupytext pair (`cropkit.pairs`, importable from here): ``python -m cropkit.notebook --sync``
syncs every pair.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

from . import paths
from .pairs import (  # noqa: F401
    CELL_ID,
    INSTALL_TAG,
    KERNELSPEC,
    REPOSITORY_URL,
    TEXT_FORMAT,
    install_cell_source,
    normalise,
    pair_differences,
    paired_text,
    sync,
)

BUDGET_S = {"smoke": 180, "cpu": 600, "paper": None}  # seconds per lesson; smoke = seconds plus kernel start
HARD_CAP = 3  # the main job stops a cell only after HARD_CAP × the budget (a hang, not a slow machine)

def lessons_dir() -> Path:
    """The checkout's ``notebooks/`` when running from a checkout, else the lessons packaged with cropkit."""
    root = paths.checkout()
    return root / "notebooks" if root is not None else paths.PACKAGE / "lessons"


NOTEBOOK_DIR = lessons_dir()


def notebooks(directory: str | Path | None = None) -> list[Path]:
    """The numbered lessons, in order (from :func:`lessons_dir` unless ``directory`` is given)."""
    return sorted(Path(directory or lessons_dir()).glob("[0-9][0-9]_*.ipynb"))


def copy_lessons(dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy every lesson into ``dest`` (created) and return the copies; existing files are kept unless
    ``overwrite`` (a learner's edited lesson is never replaced silently)."""
    found = notebooks()
    if not found:
        raise FileNotFoundError(f"no lessons in {lessons_dir()}; this cropkit was installed without them")
    dest = paths.ensure_dir(dest)
    clash = [dest / p.name for p in found if (dest / p.name).exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{', '.join(p.name for p in clash)} already in {dest}; pass overwrite=True (--force)")
    return [Path(shutil.copyfile(p, dest / p.name)) for p in found]


# ----------------------------------------------------------------------------- parameters

TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": (list, tuple), "tuple": (list, tuple),
         "dict": dict}


def _parameters_cell(nb) -> dict:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    return cells[0]


def parameters(path: str | Path) -> dict[str, dict]:
    """``{name: {"default", "type", "help"}}`` as papermill declares them (``papermill.inspect_notebook``).

    Every line of the parameters cell must be ``NAME = literal  # help``; a line papermill cannot read (an ``=``
    inside its comment hides it from papermill) or a value that is not a literal raises ``ValueError``.
    """
    import nbformat
    import papermill

    path = Path(path)
    source = _parameters_cell(nbformat.read(str(path), as_version=4)).source
    assigned = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell may only hold `NAME = literal` lines; got "
                             f"{ast.get_source_segment(source, node)!r}")
        assigned.append(node.targets[0].id)
    found = papermill.inspect_notebook(str(path))
    hidden = [name for name in assigned if name not in found]
    if hidden:
        raise ValueError(f"{path.name}: papermill cannot read the parameter line(s) of {hidden}; "
                         "keep `=` out of their comments")
    declared = {}
    for name, p in found.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            raise ValueError(f"{path.name}: {name} = {p['default']} is not a plain literal") from None
        kind = p["inferred_type_name"]
        kind = None if kind == "None" else kind
        declared[name] = {"default": default, "type": kind or (type(default).__name__ if default is not None else None),
                          "help": p["help"]}
    return declared


def declared_parameters(path: str | Path) -> dict:
    """``{name: default value}`` of the parameters cell (see :func:`parameters`)."""
    return {name: p["default"] for name, p in parameters(path).items()}


def check_parameters(path: str | Path, given: dict) -> None:
    """Raise ``ValueError`` for a name the lesson does not declare or a value of the wrong type."""
    declared = parameters(path)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{Path(path).name} has no parameter(s) {unknown}; its parameters are {sorted(declared)}")
    for name, value in given.items():
        kind, default = declared[name]["type"], declared[name]["default"]
        allowed = TYPES.get(kind, object) if kind else object
        if value is None and default is None:
            continue  # None: the profile's value
        if not isinstance(value, allowed) or (isinstance(value, bool) and kind in ("int", "float")):
            raise ValueError(f"{Path(path).name}: {name} must be {kind}"
                             f"{' or None' if default is None else ''} ({declared[name]['help']}); got {value!r}")


# ----------------------------------------------------------------------------- results

def has_outputs(path: str | Path) -> bool:
    """True if a stored notebook carries outputs or execution counts (they must be stripped before commit)."""
    nb = json.loads(Path(path).read_text())
    return any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


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
            parameters: dict | None = None, budget_s: float | None = -1, progress: bool = False,
            strict_budget: bool = True) -> dict:
    """Execute a lesson under ``profile`` and return the JSON it wrote.

    ``output_dir`` is resolved against the caller's working directory; the kernel runs in it and the executed copy
    is written there (``output_dir/<stem>.ipynb``). Unknown parameter names and values of the wrong type raise
    ``ValueError`` before the kernel starts. ``budget_s`` (default: the profile's, ``None`` = no limit) bounds every
    cell and the whole notebook, raising ``TimeoutError``; with ``strict_budget=False`` running over it only warns
    and a cell is stopped after ``HARD_CAP × budget_s``.
    """
    import logging

    import papermill

    from .profiles import PROFILES

    # papermill logs every cell at INFO; errors still reach the caller as exceptions.
    logging.getLogger("papermill").setLevel(logging.ERROR)

    path, output_dir = Path(path).resolve(), Path(output_dir).expanduser().resolve()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    given = {"PROFILE": profile, "OUTPUT_DIR": str(output_dir), **(parameters or {})}
    check_parameters(path, given)
    budget_s = BUDGET_S[profile] if budget_s == -1 else budget_s
    cell_limit = budget_s if strict_budget or budget_s is None else HARD_CAP * budget_s
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"{path.stem}.json"
    json_path.unlink(missing_ok=True)  # never return a stale result
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(output_dir / path.name), parameters=given, kernel_name="python3",
                               cwd=str(output_dir), progress_bar=progress, execution_timeout=cell_limit,
                               log_output=False)
    elapsed = time.perf_counter() - start
    if budget_s is not None and elapsed > budget_s:
        message = f"{path.name} took {elapsed:.0f} s under profile {profile!r}; its budget is {budget_s} s"
        if strict_budget:
            raise TimeoutError(message)
        warnings.warn(message, stacklevel=2)
    if not json_path.exists():
        raise RuntimeError(f"{path.name} ran but wrote no {json_path.name}; it must call cropkit.notebook.save_results")
    results = json.loads(json_path.read_text())
    results.setdefault("_seconds", elapsed)
    if budget_s is not None and elapsed > budget_s:
        results["_over_budget"] = f"took {elapsed:.0f} s, budget {budget_s} s"
    return results


def render_html(ipynb: str | Path) -> Path:
    """Render an executed notebook to ``<same name>.html`` beside it (nbconvert) and return that path."""
    import nbformat
    from nbconvert import HTMLExporter

    ipynb = Path(ipynb)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    html = ipynb.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def _error_text(error: BaseException) -> str:
    """One readable paragraph for the summary page: the exception and, for a failed cell, its last lines."""
    name = getattr(error, "ename", None) or type(error).__name__
    value = getattr(error, "evalue", None) or str(error)
    return f"{name}: {value}".strip()


def run_all(profile: str = "cpu", output_dir: str | Path = "outputs", only: list[str] | None = None,
            directory: str | Path | None = None) -> dict:
    """The main job: every lesson in order, executed copies, HTML, JSON and ``summary.html`` in
    ``output_dir/<profile>/`` (``output_dir`` resolved against the working directory).

    Returns ``{stem: results}``; a lesson that failed maps to ``{"_error": "…"}`` and the others still run. No
    lesson to run (``only`` matching nothing, or none found) raises ``ValueError`` before anything is written.
    """
    from tqdm.auto import tqdm

    from .report import write_summary

    found = notebooks(directory)
    paths_ = [p for p in found if not only or any(p.stem.startswith(o) for o in only)]
    if not paths_:
        where = directory or lessons_dir()
        raise ValueError(f"no lesson matches {only} in {where}; lessons: {[p.stem for p in found]}" if found
                         else f"no lessons found in {where}")
    output_dir = Path(output_dir).expanduser().resolve() / profile
    summary = {}
    for path in tqdm(paths_, desc=f"lessons ({profile})", unit="nb"):
        tqdm.write(f"→ {path.name}")
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                summary[path.stem] = execute(path, profile=profile, output_dir=output_dir, progress=True,
                                             strict_budget=False)
            for w in caught:
                tqdm.write(f"  warning: {w.message}")
            tqdm.write(f"  done in {time.perf_counter() - start:.0f} s → {output_dir / path.name}")
        except Exception as error:  # a failed lesson is reported, and the next one still runs
            summary[path.stem] = {"_error": _error_text(error), "_seconds": time.perf_counter() - start}
            tqdm.write(f"  FAILED after {time.perf_counter() - start:.0f} s: {summary[path.stem]['_error']}")
        executed = output_dir / path.name
        if executed.exists():
            try:
                render_html(executed)
            except Exception as error:  # the page still links the .ipynb
                tqdm.write(f"  could not render {executed.name} to HTML: {error}")
    tqdm.write(f"summary → {write_summary(output_dir, summary, profile)}")
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
    parser.add_argument("--sync", nargs="*", metavar="LESSON",
                        help="run nothing: sync each lesson's .ipynb with its .py (the newer wins), strip outputs, "
                             "number new cells and reset the install cell (all lessons if none is named)")
    args = parser.parse_args(argv)
    if args.sync is not None:
        chosen = [Path(p) for p in args.sync] or notebooks()
        changed = [p for p in dict.fromkeys(Path(p).with_suffix(".ipynb") for p in chosen) if sync(p)]
        for p in changed:
            print(f"synced {p} and {paired_text(p).name}")
        return 0
    try:
        summary = run_all(args.profile, args.output, args.only)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if any("_error" in r for r in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
