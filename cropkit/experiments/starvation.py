"""Layer starvation, made visible: where a structured prune left a network's nodes, stage by stage, and how the
node scores of the first and the last stage compare (a trained network's gradient-flow score can starve the last
stage: at θ_t the ratio of layer-1 to layer-4 CroP-S scores grows several-fold on the claims' ResNet18).

    stage_layout(result.layout)                  "conv1 16/16 · layer1 16/16 · … · layer4 6/128 (min 1)"
    stage_scores(crop_nodes_scores)              {stage: mean node score}
"""
from __future__ import annotations

import statistics


def stage(layer: str) -> str:
    """The stage a layer belongs to: the first part of its name (``layer4.1.conv2`` → ``layer4``)."""
    return layer.split(".")[0]


def stage_layout(layout: dict) -> str:
    """A structured run's layout ({layer: [kept, dense]}) per stage: kept/dense nodes summed over the stage's
    layers, and the fewest nodes any of its layers kept when that is below a tenth of the layer."""
    stages: dict[str, list] = {}
    for layer, (kept, dense) in layout.items():
        stages.setdefault(stage(layer), []).append((kept, dense))
    parts = []
    for name, layers in stages.items():
        kept, dense = sum(k for k, _ in layers), sum(d for _, d in layers)
        thin = min(layers, key=lambda kd: kd[0] / kd[1])
        parts.append(f"{name} {kept}/{dense}" + (f" (min {thin[0]}/{thin[1]})" if thin[0] < thin[1] / 10 else ""))
    return " · ".join(parts)


def stage_scores(node_scores: dict) -> dict[str, float]:
    """{stage: mean node score} of per-node scores ({layer: 1-D tensor})."""
    stages: dict[str, list[float]] = {}
    for layer, values in node_scores.items():
        stages.setdefault(stage(layer), []).extend(float(v) for v in values.flatten())
    return {name: statistics.fmean(values) for name, values in stages.items()}
