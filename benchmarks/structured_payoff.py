"""Structured payoff: what CroP-S pruning saves on a real network, measured side by side with its dense original.

For ResNet18 and VGG16 in CIFAR shape (3×32×32 inputs, 10 classes), at full and ¼ width, the dense network is
scored once with ``cropkit.core.scores.crop_nodes`` and pruned with ``cropkit.core.prune.structured`` at each target
weight sparsity, in two budgets:

    budget="weights"  remove the lowest-scoring nodes until the target *weight* sparsity is reached (the default)
    budget="flops"    remove nodes by score per FLOP saved until forward FLOPs fall by the same fraction

Each row gives pruned ÷ dense ratios of params, FLOPs, training-step time, inference time, peak training memory
and disk size, and the share of the FLOP reduction that became speedup, (1 − t_p/t_d) / (1 − F_p/F_d).
Training steps and inference passes of dense and pruned are interleaved (see `benchmarks.common.interleave`).
Inputs are synthetic CIFAR-shaped batches: timing does not depend on pixel values, and CIFAR is not bundled.

Target (issue 7): at sparsity 0.9 the full-width ResNet18 turns ≥ 50 % of its FLOP reduction into training-step
speedup and needs ≥ 2× less peak memory.
"""
from __future__ import annotations

import copy
import warnings

import pandas as pd

from benchmarks import common
from cropkit.core import measure, prune, scores, storage
from cropkit.tasks import models

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
BUDGETS = ("weights", "flops")
TARGET_SHARE, TARGET_MEMORY = 0.5, 2.0  # at sparsity 0.9, ResNet18 full width


def configs(quick: bool, full: bool) -> list[dict]:
    """(model, width, batch, repeats, sparsities) to run. Full width is slow on a CPU: small batches, few repeats."""
    if quick:
        return [dict(model=m, width=1 / 16, batch=4, repeats=2, sparsities=(0.9,)) for m in ("resnet18", "vgg16")]
    gpu = common.device().type == "cuda"
    small = dict(width=0.25, batch=128 if gpu else 32, repeats=9 if gpu else 5, sparsities=SPARSITIES)
    large = dict(width=1.0, batch=128 if gpu else (16 if full else 8), repeats=9 if gpu else (5 if full else 3),
                 sparsities=SPARSITIES)
    return [dict(model=m, **size) for size in (large, small) for m in ("resnet18", "vgg16")]


def _sizes(model, x, y) -> dict:
    return dict(params=measure.param_count(model), flops=measure.flops(model, x[:1]),
                memory=measure.peak_memory(model, x, y)["bytes"], disk=storage.disk_size(model))


def run_config(name: str, width: float, batch: int, repeats: int, sparsities, bar,
               min_seconds: float = 2.0) -> list[dict]:
    dev = common.device()
    dense = models.build(name, (3, 32, 32), 10, width=width, seed=0).to(dev)
    x, y = common.batch((3, 32, 32), batch, dev=dev)
    node_scores = scores.crop_nodes(dense, [(x, y)])
    base = _sizes(dense, x, y)
    rows = []
    for sparsity in sparsities:
        pruned = {}
        for budget in BUDGETS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "reaches at most": reported below through the achieved values
                pruned[budget] = prune.structured(copy.deepcopy(dense), node_scores, sparsity, x[:2], budget=budget)
        candidates = {"dense": dense, **pruned}
        step = common.interleave({k: common.TrainStep(copy.deepcopy(m), x, y) for k, m in candidates.items()},
                                 repeats, min_seconds=min_seconds)
        infer = common.interleave({k: common.Inference(m, x) for k, m in candidates.items()}, repeats,
                                  min_seconds=min_seconds)
        for budget, model in pruned.items():
            size = _sizes(model, x, y)
            flop_ratio = size["flops"] / base["flops"]
            rows.append(dict(
                model=name, width=width, budget=budget, target_sparsity=sparsity,
                weight_sparsity=measure.weight_sparsity(model, dense),
                node_sparsity=measure.node_sparsity(model, dense),
                flop_reduction=1 - flop_ratio,
                params_ratio=size["params"] / base["params"], flops_ratio=flop_ratio,
                step_ratio=step[budget] / step["dense"], infer_ratio=infer[budget] / infer["dense"],
                memory_ratio=size["memory"] / base["memory"], disk_ratio=size["disk"] / base["disk"],
                step_speedup=step["dense"] / step[budget],
                share_train=common.speedup_share(step[budget], step["dense"], size["flops"], base["flops"]),
                share_infer=common.speedup_share(infer[budget], infer["dense"], size["flops"], base["flops"]),
                dense_step_ms=step["dense"], pruned_step_ms=step[budget],
                dense_infer_ms=infer["dense"], pruned_infer_ms=infer[budget],
                dense_memory_bytes=base["memory"], pruned_memory_bytes=size["memory"],
                batch_size=batch, repeats=repeats))
        bar.update(1)
    return rows


def plot(frame: pd.DataFrame, quick: bool) -> None:
    fig, grid, panels = common.model_panels(frame)
    series = {"flops_ratio": "FLOPs", "step_ratio": "train step time", "infer_ratio": "inference time",
              "memory_ratio": "peak train memory"}
    for ax, (model, width) in panels:
        part = frame[(frame.model == model) & (frame.width == width)]
        for (column, label), color in zip(series.items(), ("k", "C0", "C1", "C2")):
            for budget, style in (("weights", "-o"), ("flops", "--s")):
                rows = part[part.budget == budget]
                ax.plot(rows.target_sparsity, rows[column], style, color=color, ms=4,
                        label=f"{label} ({budget} budget)")
        ax.set_yscale("log")
        ax.set_xlim(0.45, 1.0)
        ax.axhline(1, color="0.7", lw=0.8)
        ax.set_title(f"{model}, width {width:g}")
        ax.set_xlabel("target: weight sparsity or FLOP cut")
    for ax in grid[:, 0]:
        ax.set_ylabel("pruned ÷ dense (log)")
    grid[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("CroP-S structured pruning: what the pruned network costs against dense")
    common.save_figure(fig, "structured_payoff", quick)


def report(frame: pd.DataFrame, quick: bool) -> None:
    common.show(frame, ["model", "width", "budget", "target_sparsity", "weight_sparsity", "flop_reduction",
                        "params_ratio", "flops_ratio", "step_ratio", "infer_ratio", "memory_ratio", "disk_ratio",
                        "share_train", "share_infer"])
    print("\n    weight budget against FLOP budget at target 0.9 (speedup = dense step ÷ pruned step):")
    for (model, width), part in frame[frame.target_sparsity == 0.9].groupby(["model", "width"], sort=False):
        w, f = (part[part.budget == b].iloc[0] for b in BUDGETS)
        print(f"    {model:>8} ×{width:<6g} weights budget: FLOP cut {w.flop_reduction:6.1%}, "
              f"speedup ×{w.step_speedup:.2f}"
              f"  |  flops budget: FLOP cut {f.flop_reduction:6.1%} at weight sparsity {f.weight_sparsity:.3f}, "
              f"speedup ×{f.step_speedup:.2f}")
    target = frame[(frame.model == "resnet18") & (frame.width == frame.width.max()) & (frame.target_sparsity == 0.9)]
    print(f"\n    targets (ResNet18, width {frame.width.max():g}, sparsity 0.9; issue 7):")
    for _, row in target.iterrows():
        print(f"    {row.budget:>7} budget: FLOP cut {row.flop_reduction:.1%}, step speedup ×{row.step_speedup:.2f}, "
              f"share of FLOP cut turned into speedup {row.share_train:.0%} (target ≥ {TARGET_SHARE:.0%}) "
              f"{common.verdict(row.share_train, TARGET_SHARE)}; "
              f"peak memory ÷{1 / row.memory_ratio:.2f} (target ≥ ÷{TARGET_MEMORY:g}) "
              f"{common.verdict(1 / row.memory_ratio, TARGET_MEMORY)}")


def summary(frame: pd.DataFrame) -> list[str]:
    """One line per (model, width) at target 0.9, weight budget: the headline of this benchmark for `./kit bench`."""
    part = frame[(frame.target_sparsity == 0.9) & (frame.budget == "weights")]
    return ["structured payoff (CroP-S at 0.9, weight budget): " + "; ".join(
        f"{r.model} ×{r.width:g} step ×{r.step_speedup:.2f} faster, {r.share_train:.0%} of the FLOP cut"
        for r in part.itertuples())]


def main(quick: bool = False, full: bool = False) -> pd.DataFrame:
    """Run the grid (``full``: larger batches and more repeats at full width) and return one row per pruned model."""
    common.header("structured payoff: CroP-S pruned ÷ dense", quick)
    todo = configs(quick, full)
    rows = []
    with common.progress(None, "structured payoff", total=sum(len(c["sparsities"]) for c in todo)) as bar:
        for c in todo:
            bar.set_postfix_str(f"{c['model']} width {c['width']:g}")
            rows += run_config(c["model"], c["width"], c["batch"], c["repeats"], c["sparsities"], bar,
                              min_seconds=0 if quick else 2)
    frame = pd.DataFrame(rows)
    report(frame, quick)
    common.save(frame, "structured_payoff", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
