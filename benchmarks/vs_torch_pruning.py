"""Against torch-pruning's own pipeline: its magnitude pruner beside cropkit's CroP-S.

**Accuracy at the same weight sparsity and training budget.** cropkit's ``crop-s`` runs through ``cropkit.run``
on the ``cpu`` profile (digits, ``cnn``, prune at init, 20 epochs; seed 0; cache off). torch-pruning's
``MagnitudePruner`` (a ``MetaPruner`` with ``MagnitudeImportance``, ``global_pruning=True``, the classifier
ignored) prunes the same freshly initialised network, built with the same seed; its channel ratio — the knob
torch-pruning has — is bisected until the *weight* sparsity is within ±1 % of cropkit's target. Then it is
trained by the same ``cropkit.training.loop.Trainer`` with the profile's optimizer, schedule, batch size and epochs.

**Step time at equal channel counts.** The CroP-S-pruned network's kept channels per layer are copied onto a
second pruned network made by torch-pruning's own surgery (``DependencyGraph`` groups, lowest-magnitude channels
removed), so both have identical tensor shapes and differ only in which channels survived and which code cut
them. Their training steps are interleaved: a ratio near 1 confirms that nothing cropkit leaves behind (hooks,
masks, re-parametrisations) slows its pruned network down. Inputs are synthetic here (timing only).
"""
from __future__ import annotations

import copy
import time
import warnings

import pandas as pd
import torch
import torch_pruning as tp
from torch import nn

import cropkit
from benchmarks import common
from cropkit.core import measure, prune, scores
from cropkit.core.layers import classifier_name
from cropkit.experiments import runs
from cropkit.tasks import data as data_lib
from cropkit.tasks import models
from cropkit.training import loop as train

SPARSITY = 0.9
MATCH = (0.9, 1.1)  # step-time ratio band that counts as "matches"


# ----------------------------------------------------------------------------- torch-pruning's pruners

def tp_magnitude(dense: nn.Module, example: torch.Tensor, sparsity: float, tolerance: float = 0.01):
    """torch-pruning's global magnitude pruner, its channel ratio bisected to the target weight sparsity."""
    reference = measure.prunable_count(dense)

    def pruned_at(ratio: float) -> nn.Module:
        model = copy.deepcopy(dense)
        head = dict(model.named_modules())[classifier_name(model)]
        pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                           global_pruning=True, pruning_ratio=ratio, ignored_layers=[head])
        pruner.step()
        return model

    low, high, best = 0.0, 0.99, None
    for _ in range(20):
        ratio = (low + high) / 2
        model = pruned_at(ratio)
        achieved = 1 - measure.prunable_count(model) / reference
        if best is None or abs(achieved - sparsity) < abs(best[1] - sparsity):
            best = (model, achieved, ratio)
        if abs(achieved - sparsity) <= tolerance / 2:
            break
        low, high = (ratio, high) if achieved < sparsity else (low, ratio)
    return best  # (model, weight sparsity, channel ratio)


def tp_equal_counts(dense: nn.Module, reference: nn.Module, example: torch.Tensor) -> nn.Module:
    """``dense`` cut by torch-pruning's DependencyGraph to the per-layer channel counts of ``reference``, removing
    the lowest-magnitude channels of each coupled group."""
    model = copy.deepcopy(dense)
    target = measure.node_counts(reference)
    names = {m: n for n, m in model.named_modules()}
    head = dict(model.named_modules())[classifier_name(model)]
    graph = tp.DependencyGraph().build_dependency(model, example)
    importance = tp.importance.MagnitudeImportance(p=2)
    for group in graph.get_all_groups(ignored_layers=[head]):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        name = names.get(root)
        if name not in target:
            continue
        n_remove = graph.get_out_channels(root) - target[name]
        if n_remove > 0:
            idxs = torch.argsort(importance(group))[:n_remove].tolist()
            graph.get_pruning_group(root, handler, idxs).prune()
    return model


# ----------------------------------------------------------------------------- accuracy at equal budget

def accuracy_rows(profile: str) -> list[dict]:
    ours = cropkit.run("crop-s", profile=profile, sparsity=SPARSITY, seed=0, cache=False, progress=False,
                       measure_emissions=False)
    cfg = runs.settings("crop-s", profile=profile)
    dataset = data_lib.load(cfg.data, batch_size=cfg.batch_size, seed=0, limit=cfg.limit)
    start = time.perf_counter()
    dense = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    example = dataset.example_inputs(2)
    model, achieved, ratio = tp_magnitude(dense, example, SPARSITY)
    trainer = train.Trainer(model, dataset, cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            schedule=cfg.schedule, progress=False, seed=0)
    trainer.fit()
    seconds = time.perf_counter() - start
    x, y = next(iter(dataset.train))
    example = example.to(trainer.device)
    last = trainer.history.epochs[-1]
    return [
        dict(pipeline="cropkit CroP-S (at init)", test_acc=ours.test_acc, weight_sparsity=ours.weight_sparsity,
             node_sparsity=ours.node_sparsity, params=ours.params, flops=ours.flops, epochs=ours.epochs_trained,
             train_seconds=ours.train_seconds, batch_time_ms=ours.batch_time_ms, channel_ratio=float("nan")),
        dict(pipeline="torch-pruning MagnitudePruner (global, at init)", test_acc=last["test_acc"],
             weight_sparsity=measure.weight_sparsity(model, dense), node_sparsity=measure.node_sparsity(model, dense),
             params=measure.param_count(model), flops=measure.flops(model, example), epochs=trainer.epoch,
             train_seconds=seconds, batch_time_ms=measure.batch_time(model, x, y), channel_ratio=ratio),
    ]


# ----------------------------------------------------------------------------- step time at equal channels

def timing_rows(quick: bool) -> list[dict]:
    if quick:
        todo = [("resnet18", (3, 32, 32), 1 / 16, 4, 2)]
    else:
        gpu = common.device().type == "cuda"
        todo = [("resnet18", (3, 32, 32), 0.25, 128 if gpu else 32, 9 if gpu else 7),
                ("vgg16", (3, 32, 32), 0.25, 128 if gpu else 32, 9 if gpu else 7),
                ("cnn", (1, 8, 8), 1.0, 64, 15)]
    dev, rows = common.device(), []
    for name, shape, width, batch, repeats in common.progress(todo, "equal channel counts"):
        dense = models.build(name, shape, 10, width=width, seed=0).to(dev)
        x, y = common.batch(shape, batch, dev=dev)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = prune.structured(copy.deepcopy(dense), scores.crop_nodes(dense, [(x, y)]), SPARSITY, x[:2])
        theirs = tp_equal_counts(dense, ours, x[:2])
        same = [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
        step = common.interleave({"cropkit": common.TrainStep(copy.deepcopy(ours), x, y),
                                  "torch-pruning": common.TrainStep(copy.deepcopy(theirs), x, y)}, repeats,
                                 min_seconds=0 if quick else 4)
        infer = common.interleave({"cropkit": common.Inference(ours, x),
                                   "torch-pruning": common.Inference(theirs, x)}, repeats,
                                  min_seconds=0 if quick else 2)
        ratio = step["cropkit"] / step["torch-pruning"]
        rows.append(dict(model=name, width=width, batch_size=batch,
                         weight_sparsity=measure.weight_sparsity(ours, dense),
                         shapes_equal=same, cropkit_step_ms=step["cropkit"], tp_step_ms=step["torch-pruning"],
                         step_ratio=ratio, infer_ratio=infer["cropkit"] / infer["torch-pruning"],
                         target=f"{MATCH[0]}–{MATCH[1]}",
                         verdict="PASS" if same and MATCH[0] <= ratio <= MATCH[1] else "MISS"))
    return rows


def plot(accuracy: pd.DataFrame, timing: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.barh(accuracy.pipeline, accuracy.test_acc, color=["C0", "C1"])
    for i, (acc, s) in enumerate(zip(accuracy.test_acc, accuracy.weight_sparsity)):
        a.text(acc, i, f" {acc:.3f} (sparsity {s:.3f})", va="center", fontsize=8)
    a.set_xlim(0, 1.25)
    a.set_xlabel("final test accuracy")
    a.set_title("same weight sparsity, same training")
    labels = [f"{m} ×{w:g}" for m, w in zip(timing.model, timing.width)]
    b.bar(labels, timing.step_ratio, color="C0")
    b.axhspan(*MATCH, color="C2", alpha=0.15, label="matches (0.9–1.1)")
    b.axhline(1, color="0.5", lw=0.8)
    b.set_ylabel("cropkit step ÷ torch-pruning step")
    b.set_title("equal channel counts: training-step time")
    b.legend(fontsize=8)
    fig.suptitle("cropkit CroP-S against torch-pruning's magnitude pruner")
    common.save_figure(fig, "vs_torch_pruning", quick)


def main(quick: bool = False) -> pd.DataFrame:
    profile = "smoke" if quick else "cpu"
    common.header(f"against torch-pruning (profile {profile}, sparsity {SPARSITY})", quick)
    accuracy = pd.DataFrame(accuracy_rows(profile))
    common.show(accuracy, ["pipeline", "test_acc", "weight_sparsity", "node_sparsity", "params", "flops", "epochs",
                           "train_seconds", "batch_time_ms"])
    timing = pd.DataFrame(timing_rows(quick))
    print()
    common.show(timing, ["model", "width", "batch_size", "weight_sparsity", "shapes_equal", "cropkit_step_ms",
                         "tp_step_ms", "step_ratio", "infer_ratio", "target", "verdict"])
    frame = pd.concat([accuracy.assign(part="accuracy"), timing.assign(part="equal channels")], ignore_index=True)
    common.save(frame, "vs_torch_pruning", quick)
    plot(accuracy, timing, quick)
    return frame


if __name__ == "__main__":
    main()
