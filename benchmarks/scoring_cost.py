"""Scoring cost: one scoring batch of each criterion, as a multiple of one training step on the same batch.

    snip, snap_nodes   one forward + backward                        (≈ 1 step without the optimizer)
    crop, grasp        gradient g, then one Hessian-vector product   (double backprop: ≈ 2–4 steps)
    crop_nodes         the same through channel gates

Scoring calls (``cropkit.scores.get(name)(model, [(x, y)])``, eval mode as documented in cropkit.scores) and
training steps (forward, backward, Adam step; train mode) are interleaved on the same model and batch, and
each is the median of its repeats. Inputs are synthetic CIFAR-shaped batches (timing only).

Target (issue 7): CroP scoring costs ≤ 4 training steps per batch.
"""
from __future__ import annotations

import copy

import pandas as pd

from benchmarks import common
from cropkit import models, scores

CRITERIA = ("crop", "grasp", "snip", "crop_nodes", "snap_nodes")
TARGET_CROP = 4.0


def configs(quick: bool) -> list[dict]:
    if quick:
        return [dict(model="resnet18", width=1 / 16, batch=4, repeats=2)]
    gpu = common.device().type == "cuda"
    small = dict(width=0.25, batch=128 if gpu else 32, repeats=9 if gpu else 5)
    large = dict(width=1.0, batch=128 if gpu else 8, repeats=9 if gpu else 3)
    return [dict(model="resnet18", **large), dict(model="resnet18", **small), dict(model="vgg16", **small)]


class Score:
    """One scoring batch of a criterion, per call."""

    def __init__(self, criterion: str, model, x, y):
        self.fn, self.model, self.batches = scores.get(criterion), model, [(x, y)]

    def __call__(self) -> None:
        self.fn(self.model, self.batches)


def run_config(name, width, batch, repeats) -> list[dict]:
    dev = common.device()
    model = models.build(name, (3, 32, 32), 10, width=width, seed=0).to(dev)
    x, y = common.batch((3, 32, 32), batch, dev=dev)
    steps = {"train step": common.TrainStep(copy.deepcopy(model), x, y)}
    steps.update({c: Score(c, model, x, y) for c in CRITERIA})
    ms = common.interleave(steps, repeats)
    return [dict(model=name, width=width, criterion=c, steps_per_batch=ms[c] / ms["train step"],
                 score_ms=ms[c], step_ms=ms["train step"], batch_size=batch, repeats=repeats) for c in CRITERIA]


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs_ = frame[["model", "width", "batch_size"]].drop_duplicates().values.tolist()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bar_width = 0.8 / len(configs_)
    for i, (model, width, batch) in enumerate(configs_):
        part = frame[(frame.model == model) & (frame.width == width)].set_index("criterion").loc[list(CRITERIA)]
        ax.bar([j + i * bar_width for j in range(len(CRITERIA))], part.steps_per_batch, bar_width,
               label=f"{model}, width {width:g}, batch {batch}")
    ax.axhline(TARGET_CROP, color="C3", ls="--", lw=1, label=f"target for crop (≤ {TARGET_CROP:g})")
    ax.set_xticks([j + 0.4 - bar_width / 2 for j in range(len(CRITERIA))], CRITERIA)
    ax.set_ylabel("scoring one batch ÷ one training step")
    ax.set_title("Cost of scoring, in training steps")
    ax.legend(fontsize=8)
    common.save_figure(fig, "scoring_cost", quick)


def main(quick: bool = False) -> pd.DataFrame:
    common.header("scoring cost: one scoring batch ÷ one training step", quick)
    rows = []
    for c in common.progress(configs(quick), "scoring cost"):
        rows += run_config(c["model"], c["width"], c["batch"], c["repeats"])
    frame = pd.DataFrame(rows)
    frame["target"] = frame.criterion.map({"crop": f"≤ {TARGET_CROP:g}"}).fillna("")
    frame["verdict"] = [common.verdict(v, TARGET_CROP, higher_is_better=False) if c == "crop" else ""
                        for c, v in zip(frame.criterion, frame.steps_per_batch)]
    common.show(frame, ["model", "width", "batch_size", "criterion", "score_ms", "step_ms", "steps_per_batch",
                        "target", "verdict"])
    common.save(frame, "scoring_cost", quick)
    plot(frame, quick)
    return frame


if __name__ == "__main__":
    main()
