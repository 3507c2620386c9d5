"""Masks alone: why structure matters. Unstructured masks zero weights, but dense kernels still multiply them.

At each target weight sparsity, the same network is masked two ways and timed side by side with its dense
original (interleaved, see `benchmarks.common.interleave`):

    cropkit masks   ``cropkit.core.prune.unstructured`` (a parametrisation: weight = θ_orig ⊙ m, recomputed each
    forward)
    torch prune     ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` (a forward pre-hook)

Both keep the globally largest |θ| (magnitude scores), so they mask the very same weights: the criterion does
not change the timing of a masked network, only its sparsity does (and it does not). The table gives masked ÷ dense
training-step time, inference time, peak training memory (masks add θ_orig, the mask and the product) and disk
(masked weights are stored sparse), next to the FLOP ratio (1: a dense kernel does every multiply) and the
nonzero-MAC ratio (what an ideal sparse kernel would run).
"""
from __future__ import annotations

import copy
import warnings

import pandas as pd
from torch.nn.utils import prune as torch_prune

from benchmarks import common
from cropkit.core import measure, prune, scores, storage
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
VARIANTS = ("cropkit masks", "torch prune")


def configs(quick: bool, full: bool = False) -> list[dict]:
    """Masks cost the same at every sparsity, so full width runs only 0.9 unless ``full``."""
    if quick:
        return [dict(model="resnet18", width=1 / 16, batch=4, repeats=2, sparsities=(0.5, 0.9))]
    gpu = common.device().type == "cuda"
    small = dict(width=0.25, batch=128 if gpu else 32, repeats=9 if gpu else 5, sparsities=SPARSITIES)
    large = dict(width=1.0, batch=128 if gpu else 8, repeats=9 if gpu else 3,
                 sparsities=SPARSITIES if full else (0.9,))
    return [dict(model="resnet18", **large), dict(model="resnet18", **small), dict(model="vgg16", **small)]


def torch_masked(dense, sparsity: float):
    """``torch.nn.utils.prune``'s global L1 pruning of every Conv/Linear weight (same weights as magnitude)."""
    model = copy.deepcopy(dense)
    params = [(m, "weight") for _, m in prunable_layers(model)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    for module, _ in params:
        # The hook stores weight = weight_orig * weight_mask as a non-leaf tensor, which deepcopy refuses; a
        # detached copy is the same value, and the pre-forward hook recomputes it on every forward anyway.
        module.weight = module.weight.detach()
    return model


def cropkit_masked(dense, sparsity: float):
    model = copy.deepcopy(dense)
    with warnings.catch_warnings():
        # "layer would lose every weight": tiny --quick widths only; timing is unaffected
        warnings.simplefilter("ignore")
        return prune.unstructured(model, scores.magnitude(model), sparsity)


def _sizes(model, x, y) -> dict:
    return dict(flops=measure.flops(model, x[:1]), macs=measure.nonzero_macs(model, x[:1]),
                memory=measure.peak_memory(model, x, y)["bytes"], disk=storage.disk_size(model))


def run_config(name, width, batch, repeats, sparsities, bar, min_seconds: float = 2.0) -> list[dict]:
    dev = common.device()
    dense = models.build(name, (3, 32, 32), 10, width=width, seed=0).to(dev)
    x, y = common.batch((3, 32, 32), batch, dev=dev)
    base = _sizes(dense, x, y)
    rows = []
    for sparsity in sparsities:
        masked = {"cropkit masks": cropkit_masked(dense, sparsity), "torch prune": torch_masked(dense, sparsity)}
        candidates = {"dense": dense, **masked}
        step = common.interleave({k: common.TrainStep(copy.deepcopy(m), x, y) for k, m in candidates.items()},
                                 repeats, min_seconds=min_seconds)
        infer = common.interleave({k: common.Inference(m, x) for k, m in candidates.items()}, repeats,
                                  min_seconds=min_seconds)
        for variant, model in masked.items():
            size = _sizes(model, x, y)
            rows.append(dict(
                model=name, width=width, variant=variant, target_sparsity=sparsity,
                weight_sparsity=measure.weight_sparsity(model, dense),
                flops_ratio=size["flops"] / base["flops"], nonzero_macs_ratio=size["macs"] / base["macs"],
                step_ratio=step[variant] / step["dense"], infer_ratio=infer[variant] / infer["dense"],
                memory_ratio=size["memory"] / base["memory"], disk_ratio=size["disk"] / base["disk"],
                dense_step_ms=step["dense"], masked_step_ms=step[variant],
                dense_infer_ms=infer["dense"], masked_infer_ms=infer[variant],
                dense_memory_bytes=base["memory"], masked_memory_bytes=size["memory"],
                batch_size=batch, repeats=repeats))
        bar.update(1)
    return rows


def plot(frame: pd.DataFrame, quick: bool) -> None:
    fig, grid, panels = common.model_panels(frame)
    for ax, (model, width) in panels:
        part = frame[(frame.model == model) & (frame.width == width)]
        for variant, style in zip(VARIANTS, ("-o", "--s")):
            rows = part[part.variant == variant]
            ax.plot(rows.target_sparsity, rows.step_ratio, style, color="C0", ms=4, label=f"train step ({variant})")
            ax.plot(rows.target_sparsity, rows.memory_ratio, style, color="C2", ms=4, label=f"peak memory ({variant})")
        rows = part[part.variant == VARIANTS[0]]
        ax.plot(rows.target_sparsity, rows.nonzero_macs_ratio, ":x", color="k", label="nonzero MACs (ideal)")
        ax.axhline(1, color="0.7", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlim(0.45, 1.0)
        ax.set_title(f"{model}, width {width:g}")
        ax.set_xlabel("weight sparsity")
    for ax in grid[:, 0]:
        ax.set_ylabel("masked ÷ dense (log)")
    grid[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Unstructured masks: the dense kernels still do every multiply")
    common.save_figure(fig, "masks_alone", quick)


def main(quick: bool = False, full: bool = False) -> pd.DataFrame:
    common.header("masks alone: unstructured masks ÷ dense", quick)
    todo = configs(quick, full)
    rows = []
    with common.progress(None, "masks alone", total=sum(len(c["sparsities"]) for c in todo)) as bar:
        for c in todo:
            bar.set_postfix_str(f"{c['model']} width {c['width']:g}")
            rows += run_config(c["model"], c["width"], c["batch"], c["repeats"], c["sparsities"], bar,
                              min_seconds=0 if quick else 2)
    frame = pd.DataFrame(rows)
    common.show(frame, ["model", "width", "variant", "target_sparsity", "weight_sparsity", "flops_ratio",
                        "nonzero_macs_ratio", "step_ratio", "infer_ratio", "memory_ratio", "disk_ratio"])
    slower = (frame.step_ratio >= 0.95).mean()
    print(f"\n    masked steps at ≥ 0.95× dense time in {slower:.0%} of rows (expected: masks save no time; "
          f"only disk shrinks, because masked weights are stored sparse)")
    common.save(frame, "masks_alone", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
