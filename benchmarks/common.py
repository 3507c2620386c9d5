"""What every benchmark shares: where results go, where they ran, interleaved timing, verdicts, tables.

Timing on a shared machine is noisy, so nothing is timed alone. The candidates of one comparison (dense and its
pruned versions) are each wrapped in a callable that runs one step, and :func:`interleave` calls them in turn
(A B C, C B A, A B C, ...) and keeps the median of each: a burst of load from elsewhere hits every candidate
alike, and the ratio between candidates is what the benchmarks report.
"""
from __future__ import annotations

import datetime
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from cropkit.core import hardware

ROOT = Path(__file__).resolve().parent.parent


def out_dir() -> Path:
    """``outputs/benchmarks/`` of the checkout (git-ignored), or ``$CROPKIT_BENCH_OUT``."""
    path = Path(os.environ.get("CROPKIT_BENCH_OUT", ROOT / "outputs" / "benchmarks"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load() -> str:
    """The machine's load average (1, 5, 15 min) against its core count: timings are only as good as this."""
    one, five, fifteen = os.getloadavg()
    return f"load avg {one:.1f}/{five:.1f}/{fifteen:.1f} (1/5/15 min) on {os.cpu_count()} cores"


def where() -> str:
    """Hardware, date and load: printed above every table and stored in every CSV."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"{hardware.describe()} · {now} · {load()}"


def header(title: str, quick: bool) -> None:
    print(f"\n=== {title}{' (--quick: tiny sizes, numbers are not meaningful)' if quick else ''}")
    print(f"    {where()}")


# ----------------------------------------------------------------------------- steps to time

def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class TrainStep:
    """One full training step (forward, backward, Adam step) of ``model`` on a fixed batch, per call.

    The model and its optimizer persist between calls, so repeated calls time the steady state, as
    `cropkit.core.measure.batch_time` does, but the calls of several models can be interleaved.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 2e-3):
        self.model = model.train()
        self.x, self.y = x, y
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        self.loss_fn = nn.CrossEntropyLoss()

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.x), self.y).backward()
        self.optimizer.step()


class Inference:
    """One eval-mode forward pass without gradients, per call."""

    def __init__(self, model: nn.Module, x: torch.Tensor):
        self.model, self.x = model, x

    def __call__(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.x)


def interleave(steps: dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
               dev: torch.device | None = None, min_seconds: float = 0.0, max_repeats: int = 200) -> dict[str, float]:
    """Median milliseconds of each callable, calling them in turn, every other round in reverse order.

    At least ``repeats`` rounds; more (up to ``max_repeats``) until ``min_seconds`` have been spent timing, so
    that millisecond steps get enough samples for a stable median.
    """
    dev = dev or device()
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    start_all, r = time.perf_counter(), 0
    while r < repeats or (time.perf_counter() - start_all < min_seconds and r < max_repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(dev)
            start = time.perf_counter()
            steps[name]()
            sync(dev)
            times[name].append((time.perf_counter() - start) * 1e3)
        r += 1
    return {name: statistics.median(t) for name, t in times.items()}


def batch(input_shape, batch_size: int, num_classes: int = 10, seed: int = 0, dev=None):
    """A fixed synthetic batch (timing only: never an accuracy)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *input_shape, generator=g)
    y = torch.randint(0, num_classes, (batch_size,), generator=g)
    dev = dev or device()
    return x.to(dev), y.to(dev)


def speedup_share(t_pruned: float, t_dense: float, f_pruned: float, f_dense: float) -> float:
    """How much of the FLOP reduction became wall-clock speedup: (1 − t_p/t_d) / (1 − F_p/F_d)."""
    flop_cut = 1 - f_pruned / f_dense
    return (1 - t_pruned / t_dense) / flop_cut if flop_cut > 0 else float("nan")


# ----------------------------------------------------------------------------- verdicts and output

def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    """PASS/MISS of a measured value against a target (printed, never asserted: timings are not tests)."""
    if value != value:  # NaN
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def show(frame: pd.DataFrame, columns: list[str] | None = None, floatfmt: str = "{:.3g}") -> None:
    """Print a frame as a plain, aligned table."""
    frame = frame[columns] if columns else frame
    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        print(frame.to_string(index=False, float_format=lambda v: floatfmt.format(v)))


def save(frame: pd.DataFrame, stem: str, quick: bool) -> Path:
    """Write ``<stem>[_quick].csv`` with the hardware/date/load column; return its path."""
    frame = frame.copy()
    frame["where"] = where()
    path = out_dir() / f"{stem}{'_quick' if quick else ''}.csv"
    frame.to_csv(path, index=False)
    print(f"    wrote {path}")
    return path


def model_panels(frame: pd.DataFrame):
    """A figure with one panel per (model, width) of ``frame``, two per row, sharing the y axis; an unused last
    cell is hidden. Returns (fig, grid of axes, [(ax, (model, width)), ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = frame[["model", "width"]].drop_duplicates().values.tolist()
    cols = min(2, len(keys))
    rows = -(-len(keys) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), sharey=True, squeeze=False,
                             layout="constrained")
    axes = list(grid.flat)
    for ax in axes[len(keys):]:
        ax.axis("off")
    return fig, grid, list(zip(axes, keys))


def save_figure(fig, stem: str, quick: bool) -> Path:
    import matplotlib.pyplot as plt

    fig.text(0.01, 0, where(), fontsize=7, color="0.4", va="top")  # below the axes; bbox "tight" keeps it
    path = out_dir() / f"{stem}{'_quick' if quick else ''}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"    wrote {path}")
    return path


def progress(iterable, desc: str, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
