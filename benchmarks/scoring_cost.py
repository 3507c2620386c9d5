"""Scoring cost: one scoring batch of each criterion, as a multiple of one training step on the same batch.

    snip, snap_nodes   one forward + backward                               (≈ 1 step without the optimizer)
    crop, grasp        gradient g, then one Hessian-vector product Hg       (≈ 3 gradients of work)
    crop_nodes         the same through channel gates

Hg is timed both ways `cropkit.core.derivatives.hessian_gradient` offers: ``double`` (reverse over reverse, the default;
the gradient graph of the batch is kept and serves g too) and ``forward`` (forward over reverse, ``torch.func.jvp``
of ``torch.func.grad``; g needs a pass of its own first). Scoring calls (eval mode, as documented in cropkit.scores)
and training steps (forward, backward, Adam step; train mode) are interleaved on the same model and batch, and
each is the median of its repeats. Inputs are synthetic CIFAR-shaped batches (timing only).

Target (issue 23): CroP scoring ≤ 2.5 training steps per batch on ResNet18 ×1 and ×¼ (issue 7 asked ≤ 4).
"""
from __future__ import annotations

import copy
import functools

import pandas as pd

from benchmarks import common
from cropkit.core import scores
from cropkit.tasks import models

# (criterion, how its Hg is computed); "" for criteria without one
CRITERIA = (("crop", "double"), ("crop", "forward"), ("grasp", "double"), ("snip", ""),
            ("crop_nodes", "double"), ("crop_nodes", "forward"), ("snap_nodes", ""))
TARGET_CROP = 2.5
TARGET_MODELS = {("resnet18", 1.0), ("resnet18", 0.25)}


def configs(quick: bool) -> list[dict]:
    if quick:
        return [dict(model="resnet18", width=1 / 16, batch=4, repeats=2)]
    gpu = common.device().type == "cuda"
    small = dict(width=0.25, batch=128 if gpu else 32, repeats=9 if gpu else 5)
    large = dict(width=1.0, batch=128 if gpu else 8, repeats=9 if gpu else 3)
    return [dict(model="resnet18", **large), dict(model="resnet18", **small), dict(model="vgg16", **small)]


class Score:
    """One scoring batch of a criterion (with its Hg method, if it has one), per call."""

    def __init__(self, criterion: str, method: str, model, x, y):
        fn = scores.get(criterion)
        self.fn = functools.partial(fn, method=method) if method else fn
        self.model, self.batches = model, [(x, y)]

    def __call__(self) -> None:
        self.fn(self.model, self.batches)


def label(criterion: str, method: str) -> str:
    return f"{criterion} ({method})" if method else criterion


def run_config(name, width, batch, repeats) -> list[dict]:
    dev = common.device()
    model = models.build(name, (3, 32, 32), 10, width=width, seed=0).to(dev)
    x, y = common.batch((3, 32, 32), batch, dev=dev)
    steps = {"train step": common.TrainStep(copy.deepcopy(model), x, y)}
    steps.update({label(c, m): Score(c, m, model, x, y) for c, m in CRITERIA})
    ms = common.interleave(steps, repeats)
    step = ms["train step"]
    return [dict(model=name, width=width, criterion=c, method=m, steps_per_batch=ms[label(c, m)] / step,
                 score_ms=ms[label(c, m)], step_ms=step, batch_size=batch, repeats=repeats) for c, m in CRITERIA]


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs_ = frame[["model", "width", "batch_size"]].drop_duplicates().values.tolist()
    labels = [label(c, m) for c, m in CRITERIA]
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    bar_width = 0.8 / len(configs_)
    for i, (model, width, batch) in enumerate(configs_):
        part = frame[(frame.model == model) & (frame.width == width)]
        ax.bar([j + i * bar_width for j in range(len(labels))], part.steps_per_batch, bar_width,
               label=f"{model}, width {width:g}, batch {batch}")
    ax.axhline(TARGET_CROP, color="C3", ls="--", lw=1, label=f"target for crop (≤ {TARGET_CROP:g})")
    ax.set_xticks([j + 0.4 - bar_width / 2 for j in range(len(labels))], labels, rotation=20, fontsize=8)
    ax.set_ylabel("scoring one batch ÷ one training step")
    ax.set_title("Cost of scoring, in training steps")
    ax.legend(fontsize=8)
    common.save_figure(fig, "scoring_cost", quick)


def summary(frame: pd.DataFrame) -> list[str]:
    """CroP scoring ÷ training step, both Hg paths, per model: the headline of this benchmark for `./kit bench`."""
    crop = frame[frame.criterion == "crop"].pivot_table(index=["model", "width"], columns="method",
                                                        values="steps_per_batch", sort=False)
    return [f"scoring ÷ training step (crop, target ≤ {TARGET_CROP:g} on ResNet18): " + "; ".join(
        f"{m} ×{w:g} {r['double']:.2f} double / {r['forward']:.2f} forward" for (m, w), r in crop.iterrows())]


def main(quick: bool = False) -> pd.DataFrame:
    common.header("scoring cost: one scoring batch ÷ one training step (Hg by double backprop and by forward mode)",
                  quick)
    rows = []
    for c in common.progress(configs(quick), "scoring cost"):
        rows += run_config(c["model"], c["width"], c["batch"], c["repeats"])
    frame = pd.DataFrame(rows)
    targeted = [c == "crop" and (m, w) in TARGET_MODELS for c, m, w in zip(frame.criterion, frame.model, frame.width)]
    frame["target"] = [f"≤ {TARGET_CROP:g}" if t else "" for t in targeted]
    frame["verdict"] = [common.verdict(v, TARGET_CROP, higher_is_better=False) if t else ""
                        for t, v in zip(targeted, frame.steps_per_batch)]
    common.show(frame, ["model", "width", "batch_size", "criterion", "method", "score_ms", "step_ms",
                        "steps_per_batch", "target", "verdict"])
    common.save(frame, "scoring_cost", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
