"""What a run produced, where it is cached, and how runs become the paper's table (its Tables 1–4).

    result = cropkit.run("snap", sparsity=0.9)         # a Result
    result.row()                                       # one flat dict: a row of the per-run frame
    table = cropkit.compare(["dense", "snap"], seeds=(0, 1, 2))
    save_table(table, "outputs/table.csv")             # also writes table_runs.csv (one row per run)

**The cache.** A run is stored as ``<cache dir>/<method>-<data>-<model>-s<seed>-<key>.json``, where ``key``
hashes the complete configuration (every resolved setting, the device type and name, the versions of torch,
torchvision and torch-pruning, and :func:`code_version`, a hash of the code, docstrings and comments left out, of
the modules that compute results). A re-executed notebook therefore replays its runs at
once, and any change to the code that trains or measures makes the old entries unreachable instead of stale.
The default directory is ``$CROPKIT_CACHE``, else ``outputs/cache`` of the source checkout (git-ignored), else a
per-user cache folder (`cropkit.paths.cache_root`).
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cropkit import __version__
from cropkit.paths import cache_root

if TYPE_CHECKING:  # annotations only: pandas loads when a table is made
    import pandas

# The modules that only present, teach or drive runs (a name: that module; a sub-package: all of it); every other
# module of the package decides what a run computes, so editing it changes code_version() (a new module counts until
# it is named here).
PRESENTATION_MODULES = ("__init__", "__main__", "cli", "paths", "lessons", "training.tracking",
                        "experiments.comparison", "experiments.grid", "experiments.sweeps", "experiments.executors",
                        "experiments.claims", "experiments.lottery", "experiments.paper_grid",
                        "experiments.verdicts")
PACKAGE = Path(__file__).resolve().parent.parent


def modules() -> list[str]:
    """Every module of the package, as ``sub.module`` (``experiments.runs``; ``cli`` at the top)."""
    return sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py"))


def presentation(module: str) -> bool:
    """Whether ``module`` (``sub.module``) only presents, teaches or drives runs (:data:`PRESENTATION_MODULES`)."""
    return any(module == name or module.startswith(f"{name}.") for name in PRESENTATION_MODULES)


def result_modules() -> list[str]:
    """The package's modules whose code enters :func:`code_version`: all but the presentation ones."""
    return [m for m in modules() if not presentation(m)]


@dataclasses.dataclass
class Result:
    """One run: its configuration, the paper's columns (Tables 1–4) and a few more.

    test_acc            final test accuracy (fraction); best_test_acc: best epoch once pruning had finished
                        (classification; NaN for the other tasks)
    metric              the task's metric (`cropkit.tasks.task`): "acc", "rmse", "log_ppl", "return"
    test_metric         its final test value; best_test_metric: the best epoch's (max or min by the task) once
                        pruning had finished, among the epochs measured (every ``eval_every``-th and the last).
                        For classification equal to test_acc / best_test_acc (also when loaded from a result cached
                        before these columns existed)
    weight_sparsity     removed-or-zero prunable weights ÷ those of the dense model built with the same seed
    node_sparsity       removed nodes ÷ nodes of that dense model (0 for unstructured methods)
    params              nonzero parameters of the final model (masked weights do not count)
    flops               forward FLOPs per sample (FlopCounterMode; dense-equivalent for masked models)
    nonzero_macs        multiply-accumulates per sample with a nonzero weight (what a sparse kernel would run)
    epochs_trained      every epoch spent: dense phases, all LTR trainings, tick-tock epochs
    prune_epoch         epochs_trained when the last prune happened (0 = at init; None for dense)
    train_seconds       wall time of the whole method: scoring, detection, surgery and training (a resumed run:
                        the sum of its segments, `cropkit.training.checkpoint`)
    batch_time_ms       median full training step of the final model after warm-up
    peak_memory_bytes   peak memory of a training step of the final model; peak_memory_method says how
    disk_bytes          torch.save of the final model (masked weights stored sparse: CSR, int32 indices)
    bits_per_nonzero    a format-free estimate of sparse storage: 32 value bits + a ⌈log₂ row length⌉-bit column
                        index per nonzero weight (`cropkit.core.storage.sparse_bits`; NaN in results cached before it)
    emissions_g         g CO₂eq of the training from codecarbon (an estimate on CPU; NaN when disabled)
    forced              methods with a detector (EarlyCroP-U/-S, EarlyBird): True when the prune came at the cap
                        (``max_dense_epochs``) because the detector did not fire, False when it fired; None for the
                        other methods and in results cached before this column. forced_reason: the detector's
                        warning when forced
    threads             torch's CPU threads during the run (in the cache key of a CPU run: they change the last
                        digits); cpus: the CPUs the process was allowed to use. None in results cached before them
    layout              structured methods: {node layer: [kept, dense] nodes} (where a budget went; {} otherwise)
    weight_layout       every run: {prunable layer: [kept, dense] weights} (lesson 06's density profiles; {} in
                        results cached before it)
    cpus_per_task       a SLURM job's CPU allocation; slurm_job: its id (``12_3``: task 3 of array 12); None
                        elsewhere
    """

    method: str
    dataset: str
    model: str
    width: float
    seed: int
    target_sparsity: float
    profile: str
    epochs: int
    test_acc: float
    best_test_acc: float
    weight_sparsity: float
    node_sparsity: float
    params: int
    flops: float
    nonzero_macs: float
    epochs_trained: int
    prune_epoch: int | None
    train_seconds: float
    batch_time_ms: float
    peak_memory_bytes: int
    peak_memory_method: str
    disk_bytes: int
    emissions_g: float
    device: str
    bits_per_nonzero: float = float("nan")
    key: str = ""
    metric: str = "acc"
    test_metric: float = float("nan")
    best_test_metric: float = float("nan")
    forced: bool | None = None
    forced_reason: str | None = None
    threads: int | None = None
    cpus: int | None = None
    layout: dict = dataclasses.field(default_factory=dict)
    weight_layout: dict = dataclasses.field(default_factory=dict)
    cpus_per_task: int | None = None
    slurm_job: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    config: dict = dataclasses.field(default_factory=dict)
    history: list[dict] = dataclasses.field(default_factory=list)
    from_cache: bool = dataclasses.field(default=False, compare=False)

    def __post_init__(self):
        if self.metric == "acc" and math.isnan(self.test_metric):  # cached before the task columns existed
            self.test_metric, self.best_test_metric = self.test_acc, self.best_test_acc

    def row(self) -> dict:
        """The flat row of the per-run frame: every scalar column; warnings joined by " | "."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("warnings", "config", "history", "from_cache", "layout", "weight_layout")}
        row["warnings"] = " | ".join(self.warnings)
        return row

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "from_cache"}

    @classmethod
    def from_json(cls, data: dict) -> "Result":
        return cls(**data)


# ----------------------------------------------------------------------------- cache

def _code(source: str) -> str:
    """The code of a module without its docstrings and comments (``ast.unparse`` of the docstring-free tree),
    so that editing prose never changes :func:`code_version`."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """``<package version>+<hash of the result-computing modules' code>``, read once per process (the code that
    runs is the code that was imported). Docstrings and comments do not count: only an edit to the code does."""

    digest = hashlib.sha256()
    for name in result_modules():
        path = PACKAGE.joinpath(*name.split(".")).with_suffix(".py")
        digest.update(_code(path.read_text(encoding="utf-8")).encode() if path.exists() else b"")
    return f"{__version__}+{digest.hexdigest()[:10]}"


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose code computes a result (they enter every cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {name: installed(name) for name in ("torch", "torchvision", "torch-pruning")}


def default_cache_dir() -> Path:
    """``$CROPKIT_CACHE``, else ``outputs/cache`` of the source checkout, else a per-user cache folder
    (`cropkit.paths.cache_root`); never relative to the working directory."""

    return cache_root()


def config_key(config: dict) -> str:
    """16 hex digits of the SHA-256 of the configuration, serialised with sorted keys."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, config: dict) -> Path:
    name = f"{config['method']}-{config['data']}-{config['model']}-s{config['seed']}-{config_key(config)}.json"
    return Path(cache_dir) / name


def load_cached(path: Path) -> Result | None:
    """The cached Result at ``path``, or None when absent or unreadable (then the run simply happens again)."""
    try:
        result = Result.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # absent, unreadable, not JSON, or written by another version
        return None
    result.from_cache = True
    return result


def store(path: Path, result: Result) -> None:
    """Write atomically, so that an interrupted run never leaves half a JSON file behind. Raises ``OSError``
    when ``path`` cannot be written (:func:`cropkit.run` turns that into a warning and keeps the result)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(result.to_json(), indent=1))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the paper's table

# (column of the per-run frame, header, scale, decimals, in the paper's tables?); the paper's order: accuracy,
# sparsities, then costs; the kit's extra columns after them.
COLUMNS = (
    ("test_acc", "Test accuracy ↑", 100, 1, True),
    ("weight_sparsity", "Weight sparsity", 100, 1, True),
    ("node_sparsity", "Node sparsity", 100, 1, True),
    ("train_seconds", "Training time (s) ↓", 1, 1, True),
    ("batch_time_ms", "Batch time (ms) ↓", 1, 2, True),
    ("peak_memory_bytes", "Peak memory (MB) ↓", 1e-6, 2, True),
    ("disk_bytes", "Disk (kB) ↓", 1e-3, 1, True),
    ("emissions_g", "Emissions (mg) ↓", 1e3, 3, True),
    ("best_test_acc", "Best test accuracy", 100, 1, False),
    ("epochs_trained", "Epochs", 1, 1, False),
    ("prune_epoch", "Prune epoch", 1, 1, False),
    ("params", "Params", 1, 0, False),
    ("flops", "FLOPs", 1, 0, False),
    ("nonzero_macs", "Nonzero MACs", 1, 0, False),
    ("bits_per_nonzero", "Bits per nonzero", 1, 1, False),
)
PAPER_COLUMNS = tuple(c[:4] for c in COLUMNS if c[4])
EXTRA_COLUMNS = tuple(c[:4] for c in COLUMNS if not c[4])
PERCENT = {"test_acc", "weight_sparsity", "node_sparsity", "best_test_acc"}


def _cell(values, scale: float, decimals: int, percent: bool) -> str:
    """'mean ± std' over seeds (std omitted for a single run), as the paper prints it: '91.0% ± 0.52'."""
    values = [float(v) * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    unit = "%" if percent else ""
    text = f"{mean:,.{decimals}f}{unit}"
    if len(values) > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))  # sample std, as pandas
        text += f" ± {std:,.{max(decimals, 2) if percent else decimals}f}"
    return text


def paper_table(rows: list[dict], labels: dict[str, str], families: dict[str, str]) -> "pandas.DataFrame":
    """One line per method (in the order they first appear), the paper's columns, 'mean ± std' over seeds.

    As in the paper, node sparsity reads '-' for dense and unstructured methods and weight sparsity '-' for
    dense. Runs of another task than classification (`cropkit.tasks.task`) get their metric's column first, e.g.
    "Test rmse ↓" (their accuracy columns read '-'). The numbers behind every cell stay in ``table.attrs["runs"]``
    (one dict per run).
    """
    import pandas as pd

    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = []
    for method in methods:
        runs = [r for r in rows if r["method"] == method]
        line = {"method": method, "Type": families[method], "Method": labels[method], "Seeds": len(runs)}
        for metric in dict.fromkeys(r.get("metric", "acc") for r in runs if r.get("metric", "acc") != "acc"):
            arrow = "↑" if metric == "return" else "↓"  # rmse and log-perplexity: lower is better
            line[f"Test {metric} {arrow}"] = _cell([r["test_metric"] for r in runs if r["metric"] == metric], 1, 3,
                                                   False)
        for column, header, scale, decimals in PAPER_COLUMNS + EXTRA_COLUMNS:
            line[header] = _cell([r[column] for r in runs], scale, decimals, column in PERCENT)
        if families[method] != "Structured":
            line["Node sparsity"] = "-"
        if families[method] == "Dense":
            line["Weight sparsity"] = "-"
        lines.append(line)
    table = pd.DataFrame(lines).set_index("method")
    table.attrs["runs"] = [dict(r) for r in rows]
    return table


def summary(rows: list[dict]) -> "pandas.DataFrame":
    """Numeric mean and std over seeds of every metric, per method (columns: (metric, "mean"|"std"))."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    metrics = [c for c, *_ in PAPER_COLUMNS + EXTRA_COLUMNS]
    order = list(dict.fromkeys(frame["method"]))
    return frame.groupby("method", sort=False)[metrics].agg(["mean", "std"]).loc[order]


def runs_frame(table) -> "pandas.DataFrame":
    """The per-run frame behind a table from :func:`paper_table` (or the frame itself if it already is one)."""
    import pandas as pd

    return pd.DataFrame(table.attrs["runs"]) if "runs" in table.attrs else table


def save_table(table, path: str | Path) -> list[Path]:
    """Save a table as CSV (``.csv``) or JSON (``.json``). A paper table also writes its per-run frame beside it
    (``<stem>_runs.csv`` / inside the JSON under "runs"). Returns the paths written."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ValueError(f"save_table writes .csv or .json; got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = table.attrs.get("runs")
    if path.suffix == ".csv":
        table.to_csv(path)
        if runs is None:
            return [path]
        runs_path = path.with_name(f"{path.stem}_runs.csv")
        runs_frame(table).to_csv(runs_path, index=False)
        return [path, runs_path]
    payload = {"table": json.loads(table.reset_index().to_json(orient="records", force_ascii=False))}
    if runs is not None:
        payload["runs"] = json.loads(runs_frame(table).to_json(orient="records"))
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    return [path]
