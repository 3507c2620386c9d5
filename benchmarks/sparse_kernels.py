"""Masked training with sparse kernels: does a CSR sparse matmul make a masked training step cheaper on this CPU?

A masked layer (`cropkit.core.prune.unstructured`) computes with the dense weight θ_orig ⊙ m. The sparse alternative
measured here keeps the kept weights as a CSR matrix W (out × in·k; fixed structure per mask, values gathered from
θ_orig every step): forward y = W · cols (cols = im2col of the input for a convolution, the input for a Linear),
input gradient Wᵀ · ∂y (a second CSR matrix, folded back for a convolution), weight gradient ∂y · colsᵀ read at the
kept entries (the same numbers the masked layer's gradient has there). Two measurements at 90/95/98 % sparsity
(random masks, batch as in the lessons, one thread):

    step_ratio        a whole training step (forward, backward, Adam) with every prunable layer sparse
                      ÷ the same step with the kit's masked dense layers, interleaved
    best_layer_ratio  Σ_layers min(dense, sparse) ÷ Σ_layers dense, each layer's forward + backward timed alone:
                      what choosing the kernel per layer by measurement could give at most

The sparse layers' gradients equal the masked dense ones (float64 check, printed as grad_rel_err). Nothing here
changes cropkit; the answer decides whether a sparse option is worth building (issue 23).
"""
from __future__ import annotations

import copy
import warnings

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import common
from cropkit.core import prune, scores
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models

SPARSITIES = (0.9, 0.95, 0.98)


def configs(quick: bool) -> list[dict]:
    if quick:
        return [dict(model="cnn", shape=(1, 8, 8), width=0.25, batch=16, sparsities=(0.9,), seconds=0.0)]
    return [dict(model="cnn", shape=(1, 8, 8), width=1.0, batch=64, sparsities=SPARSITIES, seconds=3.0),   # digits
            dict(model="resnet18", shape=(1, 40), width=0.25, batch=128, sparsities=SPARSITIES, seconds=3.0)]  # mnist1d


class Structure:
    """The CSR index arrays of a 2-D mask and of its transpose (built once per mask)."""

    def __init__(self, mask: torch.Tensor):
        rows, cols = mask.nonzero().unbind(1)  # row-major: CSR order
        self.shape, self.cols, self.flat = tuple(mask.shape), cols, rows * mask.shape[1] + cols
        self.crow = torch.cat([rows.new_zeros(1), torch.bincount(rows, minlength=mask.shape[0]).cumsum(0)])
        self.t_order = torch.argsort(cols * mask.shape[0] + rows)  # CSR order of the transpose
        self.t_crow = torch.cat([rows.new_zeros(1), torch.bincount(cols, minlength=mask.shape[1]).cumsum(0)])
        self.t_cols = rows[self.t_order]

    def matrix(self, values):
        return torch.sparse_csr_tensor(self.crow, self.cols, values, self.shape)

    def transposed(self, values):
        return torch.sparse_csr_tensor(self.t_crow, self.t_cols, values[self.t_order], self.shape[::-1])


class SparseMatmul(torch.autograd.Function):
    """W · cols with W sparse (values at the kept entries); gradients for cols and for the values."""

    @staticmethod
    def forward(ctx, cols, values, structure):
        ctx.save_for_backward(cols, values)
        ctx.structure = structure
        return torch.sparse.mm(structure.matrix(values), cols)

    @staticmethod
    def backward(ctx, grad):
        cols, values = ctx.saved_tensors
        s = ctx.structure
        grad_cols = torch.sparse.mm(s.transposed(values), grad) if ctx.needs_input_grad[0] else None
        return grad_cols, (grad @ cols.T).flatten()[s.flat], None


def sparsify(model: nn.Module) -> nn.Module:
    """Every masked Conv1d/Conv2d/Linear computes through `SparseMatmul` (stride and padding; no dilation/groups)."""
    for _, module in prunable_layers(model):
        module.forward = _sparse_forward(module, Structure(module.parametrizations.weight[0].mask.flatten(1)))
    return model


def _sparse_forward(module: nn.Module, structure: Structure):
    def forward(x):
        values = module.parametrizations.weight.original.flatten()[structure.flat]
        if isinstance(module, nn.Linear):
            out = SparseMatmul.apply(x.T, values, structure).T
        else:
            one_d = x.dim() == 3
            kernel, padding, stride = ((1, module.kernel_size[0]), (0, module.padding[0]), (1, module.stride[0])) \
                if one_d else (module.kernel_size, module.padding, module.stride)
            cols = F.unfold(x.unsqueeze(2) if one_d else x, kernel, padding=padding, stride=stride)  # (N, C·k, L)
            n, k, length = cols.shape
            out = SparseMatmul.apply(cols.transpose(0, 1).reshape(k, n * length), values, structure)
            out = out.view(-1, n, length).transpose(0, 1)
            if not one_d:
                height = (x.shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
                out = out.reshape(n, -1, height, length // height)
        return out if module.bias is None else out + module.bias.view((1, -1) + (1,) * (out.dim() - 2))
    return forward


def masked(name, shape, width, sparsity, dtype=torch.float32):
    model = models.build(name, shape, 10, width=width, seed=0).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random masks at 0.98 may leave a layer its one reserved weight: fine here
        return prune.unstructured(model, scores.random(model), sparsity)


def grad_error(name, shape, width, sparsity) -> float:
    """max over layers of ‖∂θ_sparse − ∂θ_masked ⊙ m‖ / ‖∂θ_masked ⊙ m‖, float64, train mode, one batch."""
    dense = masked(name, shape, width, sparsity, torch.float64).train()
    sparse = sparsify(copy.deepcopy(dense))
    x, y = common.batch(shape, 16, dev=torch.device("cpu"))
    for model in (dense, sparse):
        F.cross_entropy(model(x.double()), y).backward()
    errors = []
    for (_, d), (_, s) in zip(prunable_layers(dense), prunable_layers(sparse)):
        want = d.parametrizations.weight.original.grad * d.parametrizations.weight[0].mask
        if want.norm() > 0:
            errors.append(float((s.parametrizations.weight.original.grad - want).norm() / want.norm()))
    return max(errors)


def layer_times(model, shape, batch, seconds) -> tuple[float, float]:
    """(Σ dense, Σ min(dense, sparse)) milliseconds of each prunable layer's forward + backward, timed alone."""
    inputs, hooks = {}, []
    for name, module in prunable_layers(model):
        hooks.append(module.register_forward_hook(lambda m, args, out, name=name: inputs.update({name: args[0]})))
    with torch.no_grad():
        model(common.batch(shape, batch, dev=torch.device("cpu"))[0])
    for hook in hooks:
        hook.remove()
    dense_total = best_total = 0.0
    for i, (name, module) in enumerate(prunable_layers(model)):
        x = inputs[name].detach().requires_grad_(i > 0)  # the first layer's input needs no gradient
        candidates = {"dense": copy.deepcopy(module)}
        candidates["sparse"] = copy.deepcopy(module)
        candidates["sparse"].forward = _sparse_forward(
            candidates["sparse"], Structure(candidates["sparse"].parametrizations.weight[0].mask.flatten(1)))

        def step(layer):
            def run():
                out = layer(x)
                out.backward(torch.ones_like(out))
            return run

        ms = common.interleave({k: step(v) for k, v in candidates.items()}, 5, min_seconds=seconds / 10,
                               dev=torch.device("cpu"))
        dense_total += ms["dense"]
        best_total += min(ms.values())
    return dense_total, best_total


def summary(frame: pd.DataFrame) -> list[str]:
    return ["sparse kernels ÷ masked dense step (every layer sparse | best kernel per layer): " + "; ".join(
        f"{r.model} ×{r.width:g} at {r.sparsity:g}: {r.step_ratio:.2f} | {r.best_layer_ratio:.2f}"
        for r in frame.itertuples())]


def main(quick: bool = False) -> pd.DataFrame:
    common.header("masked training with sparse kernels: CSR sparse ÷ the kit's masked dense layers", quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for c in common.progress(configs(quick), "sparse kernels"):
            for sparsity in c["sparsities"]:
                dense = masked(c["model"], c["shape"], c["width"], sparsity)
                sparse = sparsify(copy.deepcopy(dense))
                x, y = common.batch(c["shape"], c["batch"], dev=torch.device("cpu"))
                ms = common.interleave({"masked": common.TrainStep(dense, x, y),
                                        "sparse": common.TrainStep(sparse, x, y)}, 3, min_seconds=c["seconds"],
                                       dev=torch.device("cpu"))
                dense_layers, best_layers = layer_times(dense, c["shape"], c["batch"], c["seconds"])
                rows.append(dict(model=c["model"], width=c["width"], input_shape="×".join(map(str, c["shape"])),
                                 batch_size=c["batch"], sparsity=sparsity, masked_ms=ms["masked"],
                                 sparse_ms=ms["sparse"], step_ratio=ms["sparse"] / ms["masked"],
                                 best_layer_ratio=best_layers / dense_layers,
                                 grad_rel_err=grad_error(c["model"], c["shape"], c["width"], sparsity)))
    finally:
        torch.set_num_threads(threads)
    frame = pd.DataFrame(rows)
    frame["verdict"] = ["pays" if r < 0.95 else "does not pay" for r in frame.best_layer_ratio]
    common.show(frame, ["model", "width", "input_shape", "batch_size", "sparsity", "masked_ms", "sparse_ms",
                        "step_ratio", "best_layer_ratio", "grad_rel_err", "verdict"])
    common.save(frame, "sparse_kernels", quick)
    plot(frame, quick)
    return frame


def plot(frame: pd.DataFrame, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (model, width), part in frame.groupby(["model", "width"]):
        ax.plot(part.sparsity, part.step_ratio, "o-", label=f"{model} ×{width:g}: every layer sparse")
        ax.plot(part.sparsity, part.best_layer_ratio, "s--", label=f"{model} ×{width:g}: best kernel per layer")
    ax.axhline(1, color="0.5", lw=1)
    ax.set_xlabel("weight sparsity")
    ax.set_ylabel("sparse ÷ masked dense (time)")
    ax.set_title("Sparse kernels for masked training (CPU, one thread)")
    ax.legend(fontsize=7)
    common.save_figure(fig, "sparse_kernels", quick)


if __name__ == "__main__":
    main()
