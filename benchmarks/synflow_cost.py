"""SynFlow: cropkit's `prune.synflow` against the Synaptic-Flow authors' algorithm, timed on the same networks.

SynFlow (Tanaka et al., NeurIPS 2020) prunes at initialisation without data, in n rounds (100 here, the paper's
setting) of: score |θ ⊙ ∂R/∂θ| with R = 1ᵀ f_{|θ|}(1) (the network with every parameter and buffer replaced by its
absolute value, on an all-ones input), then keep the top weights globally to the density (1 − p)^{k/n}.

``authors_synflow`` restates the algorithm as the authors' code (github.com/ganguli-lab/Synaptic-Flow) runs it, not
copied: masks in the forward (weight = θ ⊙ m, here `torch.nn.utils.prune` reparametrisations), eval mode, every
tensor of the state dict made absolute in place for the scoring pass and its signs restored afterwards, float32,
score |∂R/∂θ ⊙ θ| of the stored weight, and a global threshold by ``torch.kthvalue`` that prunes every score at or
below it. cropkit's SynFlow differs in what it guarantees: the exact count round(p·N) (ties broken by position), a
layer never emptied, the model never written during scoring, and float64 when float32 scores would leave
[1e-30, 1e30]. ``agreement`` is |kept by both| ÷ |kept by either| (1 = the same mask): a check of the restatement.

Candidates run alternately (cropkit, authors, authors, cropkit, ...), each on a fresh copy of the same initialised
network; the ratio of medians is reported. Target (issue 23): cropkit ÷ authors ≤ 1.0.
"""
from __future__ import annotations

import copy
import statistics
import time

import pandas as pd
import torch
from torch.nn.utils import prune as torch_prune

from benchmarks import common
from cropkit.core import prune
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models

TARGET = 1.0
SPARSITY = 0.9


def configs(quick: bool) -> list[dict]:
    if quick:
        return [dict(model="cnn", width=0.25, shape=(1, 8, 8), rounds=5, repeats=1)]
    return [dict(model="cnn", width=1.0, shape=(1, 8, 8), rounds=100, repeats=3),       # digits
            dict(model="cnn1d", width=1.0, shape=(1, 40), rounds=100, repeats=3),      # mnist1d
            dict(model="resnet18", width=0.25, shape=(3, 32, 32), rounds=100, repeats=3),
            dict(model="vgg16", width=0.25, shape=(3, 32, 32), rounds=100, repeats=3)]


def authors_synflow(model, input_shape, sparsity: float, rounds: int) -> dict[str, torch.Tensor]:
    """The Synaptic-Flow authors' SynFlow loop, restated (module doc). Prunes ``model`` in place; returns the masks
    {"<module>.weight": bool}."""
    layers = list(prunable_layers(model))
    for _, module in layers:
        torch_prune.identity(module, "weight")  # weight_orig and a weight_mask of ones; weight = θ ⊙ m in forward
    model.eval()
    ones = torch.ones(1, *input_shape)
    for k in range(1, rounds + 1):
        with torch.no_grad():
            state = model.state_dict()
            signs = {name: torch.sign(t) for name, t in state.items()}
            for t in state.values():
                t.abs_()
        model(ones).sum().backward()
        scores = [(module.weight_orig.grad * module.weight_orig).detach().abs() for _, module in layers]
        with torch.no_grad():
            for _, module in layers:
                module.weight_orig.grad = None
            for name, t in state.items():
                t.mul_(signs[name])
            flat = torch.cat([s.flatten() for s in scores])
            n_prune = int((1 - (1 - sparsity) ** (k / rounds)) * flat.numel())
            if n_prune >= 1:
                threshold = torch.kthvalue(flat, n_prune).values
                for (_, module), s in zip(layers, scores):
                    module.weight_mask.copy_((s > threshold).to(module.weight_mask.dtype))
    return {f"{name}.weight": module.weight_mask.bool() for name, module in layers}


def run_config(model: str, width, shape, rounds, repeats) -> dict:
    base = models.build(model, shape, 10, width=width, seed=0)
    batches = [common.batch(shape, 2, dev=torch.device("cpu"))]  # SynFlow reads only the input shape
    candidates = {
        "cropkit": lambda m: prune.masks(prune.synflow(m, batches, SPARSITY, iterations=rounds)),
        "authors": lambda m: authors_synflow(m, shape, SPARSITY, rounds),
    }
    seconds, masks = {n: [] for n in candidates}, {}
    for r in range(repeats + 1):  # round 0 is a warm-up
        for n in (list(candidates) if r % 2 == 0 else list(candidates)[::-1]):
            fresh = copy.deepcopy(base)
            start = time.perf_counter()
            masks[n] = candidates[n](fresh)
            if r:
                seconds[n].append(time.perf_counter() - start)
    kept = [torch.cat([masks[n][k].flatten() for k in masks["cropkit"]]) for n in candidates]
    cropkit_s, authors_s = (statistics.median(seconds[n]) for n in candidates)
    return dict(model=model, width=width, input_shape="×".join(map(str, shape)), rounds=rounds, sparsity=SPARSITY,
                cropkit_s=cropkit_s, authors_s=authors_s, ratio=cropkit_s / authors_s,
                agreement=float((kept[0] & kept[1]).sum() / (kept[0] | kept[1]).sum()), repeats=repeats)


def summary(frame: pd.DataFrame) -> list[str]:
    return [f"SynFlow ÷ the authors' algorithm (target ≤ {TARGET:g}): " + "; ".join(
        f"{r.model} ×{r.width:g} {r.ratio:.2f}" for r in frame.itertuples())]


def main(quick: bool = False) -> pd.DataFrame:
    common.header(f"SynFlow: cropkit ÷ the authors' algorithm ({'5' if quick else '100'} rounds, sparsity {SPARSITY}, "
                  f"CPU)", quick)
    rows = [run_config(**c) for c in common.progress(configs(quick), "synflow")]
    frame = pd.DataFrame(rows)
    frame["target"] = f"≤ {TARGET:g}"
    frame["verdict"] = [common.verdict(v, TARGET, higher_is_better=False) for v in frame.ratio]
    common.show(frame, ["model", "width", "input_shape", "rounds", "sparsity", "cropkit_s", "authors_s", "ratio",
                        "agreement", "target", "verdict"])
    common.save(frame, "synflow_cost", quick)
    plot(frame, quick)
    return frame


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{m} ×{w:g}" for m, w in zip(frame.model, frame.width)]
    x = range(len(frame))
    ax.bar([i - 0.2 for i in x], frame.cropkit_s, 0.4, label="cropkit prune.synflow")
    ax.bar([i + 0.2 for i in x], frame.authors_s, 0.4, label="authors' algorithm (restated)")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel(f"seconds for {frame.rounds.iloc[0]} rounds")
    ax.set_title("SynFlow: cropkit against the authors' algorithm")
    ax.legend(fontsize=8)
    common.save_figure(fig, "synflow_cost", quick)


if __name__ == "__main__":
    main()
