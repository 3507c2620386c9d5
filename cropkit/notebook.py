"""Run the lessons headlessly: papermill with a profile, strict parameters, a time budget, and the JSON back.

    results = cropkit.notebook.execute("notebooks/00_tour.ipynb", profile="smoke", output_dir="outputs/smoke")

Each notebook has one cell tagged ``parameters`` holding plain literals (``PROFILE``, ``OUTPUT_DIR``, …) and
writes its key results with :func:`save_results` to ``OUTPUT_DIR/<stem>.json``. papermill only *warns* about
parameter names the notebook does not declare; :func:`execute` rejects them before anything runs.

The main job runs every notebook in order: ``python -m cropkit.notebook --profile cpu --output outputs``.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
BUDGET_S = {"smoke": 180, "cpu": 600, "paper": None}  # per notebook; SPEC §7 ("seconds" for smoke, plus kernel start)


def notebooks(directory: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered lessons, in order."""
    return sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))


def _parameters_cell(nb) -> dict:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    return cells[0]


def declared_parameters(path: str | Path) -> dict:
    """{name: value} of the parameters cell; every value must be a plain literal."""
    import nbformat

    cell = _parameters_cell(nbformat.read(str(path), as_version=4))
    values = {}
    for node in ast.parse(cell.source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell may only hold `NAME = literal` lines; got "
                             f"{ast.get_source_segment(cell.source, node)!r}")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def has_outputs(path: str | Path) -> bool:
    """True if a stored notebook carries outputs or execution counts (they must be stripped before commit)."""
    nb = json.loads(Path(path).read_text())
    return any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


def save_results(output_dir: str | Path, stem: str, results: dict) -> Path:
    """Write a notebook's key results to ``output_dir/stem.json`` (NaN becomes null) and return the path."""
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

    path = Path(output_dir) / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(results), indent=2, allow_nan=False))
    return path


def execute(path: str | Path, profile: str = "smoke", output_dir: str | Path = "outputs",
            parameters: dict | None = None, budget_s: float | None = -1, progress: bool = False) -> dict:
    """Execute a notebook under ``profile`` and return the JSON it wrote.

    The executed copy is written next to the JSON (``output_dir/<stem>.ipynb``). Unknown parameter names raise
    ``ValueError`` before the kernel starts. ``budget_s`` (default: the profile's, ``None`` = no limit) bounds
    every cell and the whole notebook; exceeding it raises ``TimeoutError``.
    """
    import logging

    import papermill

    from .profiles import PROFILES

    # papermill warns "Unable to parse line" for every `NAME = None` default (it infers types from literals);
    # parameters are validated here instead, so keep its log to errors.
    logging.getLogger("papermill").setLevel(logging.ERROR)

    path, output_dir = Path(path), Path(output_dir)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    declared = declared_parameters(path)
    given = {"PROFILE": profile, "OUTPUT_DIR": str(output_dir), **(parameters or {})}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{path.name} has no parameter(s) {unknown}; its parameters are {sorted(declared)}")
    budget_s = BUDGET_S[profile] if budget_s == -1 else budget_s
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"{path.stem}.json"
    json_path.unlink(missing_ok=True)  # never return a stale result
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(output_dir / path.name), parameters=given, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=progress, execution_timeout=budget_s,
                               log_output=False)
    elapsed = time.perf_counter() - start
    if budget_s is not None and elapsed > budget_s:
        raise TimeoutError(f"{path.name} took {elapsed:.0f} s under profile {profile!r}; its budget is {budget_s} s")
    if not json_path.exists():
        raise RuntimeError(f"{path.name} ran but wrote no {json_path.name}; it must call cropkit.notebook.save_results")
    results = json.loads(json_path.read_text())
    results.setdefault("_seconds", elapsed)
    return results


def run_all(profile: str = "cpu", output_dir: str | Path = "outputs", only: list[str] | None = None) -> dict:
    """The main job: every lesson in order, executed copies and JSON in ``output_dir/<profile>/``."""
    from tqdm.auto import tqdm

    output_dir = Path(output_dir) / profile
    paths = [p for p in notebooks() if not only or any(p.stem.startswith(o) for o in only)]
    summary = {}
    for path in tqdm(paths, desc=f"notebooks ({profile})", unit="nb"):
        tqdm.write(f"→ {path.name}")
        start = time.perf_counter()
        summary[path.stem] = execute(path, profile=profile, output_dir=output_dir, progress=True)
        tqdm.write(f"  done in {time.perf_counter() - start:.0f} s → {output_dir / path.name}")
    try:
        from .report import write_summary
    except ImportError:
        write_summary = None
    if write_summary is not None:
        tqdm.write(f"summary → {write_summary(output_dir, summary)}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cropkit.notebook",
                                     description="Execute cropkit's notebooks headlessly with papermill.")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--output", default="outputs", help="output folder (git-ignored)")
    parser.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 00 02")
    args = parser.parse_args(argv)
    run_all(args.profile, args.output, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
