# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Gradient flow is an NTK form
#
# **Learning goal.** See, numerically, why CroP (the criterion inside EarlyCroP) keeps the *neural tangent kernel*
# when it keeps the *gradient flow*; then measure how far five pruning criteria — CroP, SNIP, GraSP, magnitude and
# random — move the gradient flow and the NTK as the sparsity grows, and where CroP does and does not win.
#
# **The idea.** Write the outputs of the network on a batch as one long vector $Y = f(X;\theta)$ of length $N\cdot C$
# ($N$ samples, $C$ classes, *sample-major*: entry $n C + c$). The loss $L$ depends on $\theta$ only through $Y$, so
# the chain rule gives
#
# $$g_L(\theta) = \frac{\partial L}{\partial \theta} = J^\top g_L(Y), \qquad J = \frac{\partial Y}{\partial\theta}\ (N C\times P),\quad g_L(Y) = \frac{\partial L}{\partial Y}\ (N C).$$
#
# The **gradient flow** is the squared length of that gradient:
#
# $$\mathrm{GF} = g_L^\top g_L = g_L(Y)^\top\, J J^\top\, g_L(Y) = g_L(Y)^\top\, \Theta\, g_L(Y),$$
#
# where $\Theta = J J^\top$ is the **empirical NTK**, an $N C \times N C$ matrix: $\Theta_{nc,md}$ says how much a small
# gradient step that raises output $d$ on sample $m$ also raises output $c$ on sample $n$. CroP scores each weight by
# how much its removal would change GF ($|\theta \odot Hg|$) and keeps the ones that matter, so it keeps this
# NTK-weighted quadratic form. With mean-reduced cross-entropy the $1/N$ of the mean sits inside $g_L(Y)$:
# $g_L(Y)_{nc} = (\mathrm{softmax}(f(x_n))_c - [c = y_n])/N$.
#
# Everything here runs in **eval mode**: BatchNorm uses its running statistics, so each sample's output depends on that
# sample alone and the per-sample Jacobian (hence $\Theta$) is well defined. The scores are computed in eval mode too.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop); the harness (--profile smoke or paper) applies 01_gradient_flow_and_ntk.profiles.json on top
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DATA = "digits"  # type: str  dataset name
MODEL = "cnn"  # type: str  model name
WIDTH = 0.5  # type: float  width multiplier
BATCH_SIZE = 64  # type: int  batch size of the scoring and probe batches
LIMIT = None  # type: int|None  training samples kept, the first ones; None keeps them all
CHECK_SEEDS = 4  # type: int  initialisations in the identity check
CHECK_BATCHES = 4  # type: int  batches per initialisation in the identity check
CHECK_BATCH_SIZE = 12  # type: int  samples per batch in the identity check
PROBE_SIZE = 16  # type: int  samples in the probe batch whose NTK is compared
SCORE_BATCHES = 4  # type: int  training batches the criteria score on
SWEEP_SEEDS = 3  # type: int  initialisations averaged in the pruning sweep
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]  # type: list  weight sparsities of the sweep
EIGENVALUES = 40  # type: int  largest NTK eigenvalues kept for the spectrum plot
SEED = 0  # type: int  seeds the initialisations and the shuffling

# %%
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import cropkit as ck
from cropkit.lessons.widgets_ntk import NTKExplorer, pruned_copy

phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
device = ck.train.default_device()
print("measured on:", ck.hardware.describe(), "| device:", device)

data = ck.data.load(DATA, batch_size=BATCH_SIZE, seed=SEED, limit=LIMIT)
print(f"{DATA}: input {data.input_shape}, {data.num_classes} classes, {len(data.train.dataset)} training samples")
phases.done("setup")

# %% [markdown]
# ## 1 · The identity, checked in float64
#
# For several random initialisations and several training batches we compute GF twice: directly as
# $\sum_\theta \|\partial L/\partial\theta\|^2$ (one backward pass), and as $g_L(Y)^\top\,\Theta\,g_L(Y)$ with $\Theta$
# built by `torch.func` (`jacrev` over the parameters, `vmap` over the samples). We do it for two parameter sets:
# all trainable parameters, and only the *prunable* weights (conv and linear `weight`s, the set CroP scores).
# Both sides use the same set — the identity holds for any set, as long as it is the same one.

# %%
checks = []
for s in range(CHECK_SEEDS):
    model = ck.models.build(MODEL, data.input_shape, data.num_classes, width=WIDTH, seed=SEED + s)
    model = model.double().to(device)
    for x, y in ck.data.take(data.train, CHECK_BATCHES):
        x, y = x[:CHECK_BATCH_SIZE].double().to(device), y[:CHECK_BATCH_SIZE].to(device)
        for params in ("all", "prunable"):
            direct = ck.ntk.gradient_flow(model, x, y, params=params)
            via_ntk = ck.ntk.gradient_flow_from_ntk(model, x, y, params=params)
            checks.append(dict(init=s, params=params, direct=direct, via_ntk=via_ntk,
                               rel_error=ck.ntk.relative_error(direct, via_ntk)))
checks = pd.DataFrame(checks)
max_rel_error = float(checks.rel_error.max())
print(f"{len(checks)} checks ({CHECK_SEEDS} initialisations x {CHECK_BATCHES} batches of "
      f"{CHECK_BATCH_SIZE} x 2 parameter sets), float64")
print(f"largest relative error |GF - g_L(Y)^T NTK g_L(Y)| / GF = {max_rel_error:.2e}")

# %%
fig, ax = plt.subplots(figsize=(5, 4.5), constrained_layout=True)
for params, marker in (("all", "o"), ("prunable", "x")):
    part = checks[checks.params == params]
    ax.scatter(part.direct, part.via_ntk, marker=marker, label=f"θ = {params} parameters")
lo, hi = checks.direct.min() * 0.8, checks.direct.max() * 1.25
ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
ax.set(xscale="log", yscale="log", xlabel="GF = ‖∂L/∂θ‖²  (one backward pass)",
       ylabel="g_L(Y)ᵀ · NTK · g_L(Y)", title=f"the two sides agree: max rel. error {max_rel_error:.1e}")
ax.legend()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "01_identity.png"), dpi=110)
plt.show()

# %% [markdown]
# **What to notice.** Every point lies on the diagonal; the largest relative error printed above is at the level
# of float64 rounding. GF is *not* a new quantity next to the NTK: it is the NTK read along the direction of the loss
# gradient in output space. A pruning criterion that keeps GF keeps that reading of the kernel — it does not promise
# to keep the whole kernel, which is what section 2 measures.
# phases.done("identity")

# %% [markdown]
# ## 2 · Pruning at initialisation: how far do GF and the NTK move?
#
# For each initialisation we score the dense network once per criterion on `SCORE_BATCHES` training batches (all five
# are one-shot criteria, so the ranking does not depend on the sparsity), then prune copies to each sparsity with one
# global top-k. For every pruned copy we measure, in float64 and over the prunable weights:
#
# * **GF change** $(\mathrm{GF}' - \mathrm{GF})/\mathrm{GF}$ on the scoring batches — the quantity CroP is built to keep
#   — and on a held-out *probe* batch of training samples the criteria never saw;
# * **kernel distance** $1 - \langle\Theta,\Theta'\rangle_F / (\|\Theta\|_F\|\Theta'\|_F)$ on the probe batch: a
#   change of the kernel's *shape* (0 = same up to scale);
# * the **trace ratio** $\mathrm{tr}\,\Theta'/\mathrm{tr}\,\Theta$ and the **eigenvalue spectrum**: the kernel's *scale*.
#
# A pruned weight is no longer a parameter, so its column of $J$ is gone: both GF and $\Theta$ are those of the sparse
# network (`ck.ntk` differentiates the masked re-parametrisation, so masked entries get exactly zero gradient).

# %%
CRITERIA = ["crop", "snip", "grasp", "magnitude", "random"]  # keys of ck.scores.WEIGHT_SCORES
SWEEP_DTYPE = torch.float32  # changes of tens of percent need no float64; the identity above did
rows, spectra = [], {}
for s in range(SWEEP_SEEDS):
    dense = ck.models.build(MODEL, data.input_shape, data.num_classes, width=WIDTH, seed=SEED + 100 + s)
    dense = dense.to(device)
    batches = [(x.to(device), y.to(device)) for x, y in ck.data.take(data.train, SCORE_BATCHES + 1)]
    score_batches, (probe_x, probe_y) = batches[:-1], batches[-1]
    probe_x, probe_y = probe_x[:PROBE_SIZE], probe_y[:PROBE_SIZE]
    x_score, y_score = torch.cat([x for x, _ in score_batches]), torch.cat([y for _, y in score_batches])
    reference = ck.ntk.dense_reference(dense, x_score, y_score, probe_x, "prunable", dtype=SWEEP_DTYPE)
    probe_gf_dense = ck.ntk.gradient_flow(dense, probe_x, probe_y, params="prunable")
    spectra.setdefault(("dense", None), []).append(ck.ntk.top_eigenvalues(reference["kernel"], EIGENVALUES).tolist())
    scores_by_criterion = {c: ck.scores.get(c)(dense, score_batches, seed=SEED + s) for c in CRITERIA}
    for criterion, scores in scores_by_criterion.items():
        for sparsity in SPARSITIES:
            pruned = pruned_copy(dense, scores, sparsity)
            effect = ck.ntk.pruning_effect(dense, pruned, x_score, y_score, probe_x, "prunable", dtype=SWEEP_DTYPE,
                                           eigenvalues=EIGENVALUES, reference=reference)
            probe_gf = ck.ntk.gradient_flow(pruned, probe_x, probe_y, params="prunable")
            spectra.setdefault((criterion, sparsity), []).append(effect.pop("eigenvalues"))
            rows.append(dict(init=s, criterion=criterion, sparsity=sparsity, **effect,
                             gf_change_probe=(probe_gf - probe_gf_dense) / probe_gf_dense,
                             weight_sparsity=ck.measure.weight_sparsity(pruned, dense)))
sweep = pd.DataFrame(rows)
sweep["gf_ratio"], sweep["gf_ratio_probe"] = 1 + sweep.gf_change, 1 + sweep.gf_change_probe
print(f"{len(sweep)} pruned networks ({SWEEP_SEEDS} initialisations x {len(CRITERIA)} criteria x "
      f"{len(SPARSITIES)} sparsities); achieved weight sparsity within "
      f"{(sweep.weight_sparsity - sweep.sparsity).abs().max():.1e} of the target")
# A network with no path left from input to output has an all-zero NTK: its kernel distance is undefined (NaN)
# and stays out of the means below.
cut = sweep[sweep.disconnected]
print(f"{len(cut)} of {len(sweep)} pruned networks are disconnected (all-zero NTK)"
      + (": " + ", ".join(f"{c} at {p:.0%} (init {i})" for c, p, i in zip(cut.criterion, cut.sparsity, cut.init))
         if len(cut) else ""))
summary = sweep.groupby(["criterion", "sparsity"])[["gf_change", "gf_change_probe", "kernel_distance", "trace_ratio"]].mean()
with pd.option_context("display.float_format", "{:+.3f}".format, "display.width", 160):
    display(summary.unstack("criterion").T)


# %%
def band(ax, column, ylabel, log=False):
    """Mean over initialisations per criterion, with the range (min to max) shaded."""
    for criterion in CRITERIA:
        part = sweep[sweep.criterion == criterion].groupby("sparsity")[column]
        ax.plot(part.mean().index, part.mean().values, "o-", label=criterion, lw=2.5 if criterion == "crop" else 1.2)
        ax.fill_between(part.mean().index, part.min(), part.max(), alpha=0.15)
    ax.set(xlabel="weight sparsity", ylabel=ylabel)
    if log:
        ax.set_yscale("log")

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
band(axes[0], "gf_ratio", "GF′ / GF  on the scoring batches", log=True)
band(axes[1], "gf_ratio_probe", "GF′ / GF  on a held-out batch", log=True)
band(axes[2], "kernel_distance", "kernel distance d(Θ, Θ′) on the probe batch")
for ax in axes[:2]:
    ax.axhline(1, color="k", lw=0.8, ls="--")
axes[0].set_title("gradient flow (what CroP keeps; 1 = kept)")
axes[1].set_title("gradient flow on samples the criteria never saw")
axes[2].set_title("shape of the NTK (0 = same up to scale)")
axes[0].legend(title=f"mean, range over {SWEEP_SEEDS} inits", fontsize=8)
fig.suptitle(f"Pruning {MODEL} (width {WIDTH}) at initialisation on {DATA}")
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "01_sweep.png"), dpi=110)
plt.show()

# %%
target = min(SPARSITIES, key=lambda p: abs(p - 0.9))  # the spectrum at (about) 90 % sparsity
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
dense_spec = np.mean(spectra[("dense", None)], axis=0)
axes[0].semilogy(np.arange(1, len(dense_spec) + 1), dense_spec, "k-", lw=2.5, label="dense")
for criterion in CRITERIA:
    spec = np.mean(spectra[(criterion, target)], axis=0)
    axes[0].semilogy(np.arange(1, len(spec) + 1), np.clip(spec, 1e-12, None), "-", label=criterion)
axes[0].set(xlabel="eigenvalue index k", ylabel="λ_k of the NTK", title=f"NTK spectrum at sparsity {target}")
axes[0].legend()
band(axes[1], "trace_ratio", "tr Θ′ / tr Θ", log=True)
axes[1].axhline(1, color="k", lw=0.8, ls="--")
axes[1].set_title("scale of the NTK (1 = unchanged)")
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "01_spectrum.png"), dpi=110)
plt.show()

# %%
# Which criterion moved each quantity least, per sparsity (mean over initialisations)?
means = sweep.groupby(["sparsity", "criterion"])[["gf_change", "gf_change_probe", "kernel_distance", "trace_ratio"]].mean()
best = {}
for column in ("gf_change", "gf_change_probe", "kernel_distance"):
    best[column] = {float(p): means.loc[p][column].abs().idxmin() for p in SPARSITIES}
    print(f"smallest |{column}| per sparsity:", best[column])
best["trace_ratio"] = {float(p): (means.loc[p]["trace_ratio"].apply(np.log).abs()).idxmin() for p in SPARSITIES}
print("trace ratio closest to 1 per sparsity:", best["trace_ratio"])
crop_wins = {column: sum(v == "crop" for v in best[column].values()) for column in best}
print(f"CroP moves the quantity least at this many of {len(SPARSITIES)} sparsities:", crop_wins)
grasp_gain = summary.loc["grasp", "gf_change"]
print("GraSP's GF change per sparsity:", {float(p): round(float(v), 2) for p, v in grasp_gain.items()})

# %% [markdown]
# **What to notice** (read the table and the printout above; the numbers depend on the profile and the seed —
# this is what the `cpu` profile showed).
#
# * **GF on the scoring batches.** SNIP changes GF least at the lower sparsities of the sweep and CroP from 90 % up
#   (the "smallest |gf_change|" line). "Keeps" is relative: at 90 % sparsity even CroP has lost a large part of the
#   gradient flow on this small network (first panel).
# * **GraSP raises GF** by orders of magnitude (the printed GF changes; it removes the weights whose removal increases
#   GF most) and inflates the NTK's scale with it (right panel of the second figure); the rise shrinks as sparsity
#   grows but GF stays above the dense value even at 98 %.
# * **On a held-out batch** CroP changes GF least at every sparsity of the sweep (the "gf_change_probe" line): what it
#   keeps carries over to samples the criteria never saw.
# * **The NTK's shape.** The kernel distance is a different question from GF — GF reads the kernel along a single
#   direction, $g_L(Y)$. No criterion wins it throughout: the "smallest |kernel_distance|" line names CroP at some
#   sparsities and SNIP or magnitude at others.
# * **The scale.** CroP keeps tr Θ closest to the dense one up to 90 % and GraSP above (the "trace ratio" line);
#   random and magnitude pruning shrink the whole spectrum (second figure). The first C eigenvalues — one per class —
#   stand apart from the rest in every kernel.
# * **Disconnected networks.** At 98 %, random and magnitude pruning can leave no path from input to output (the count
#   printed under the sweep): the NTK is then zero, the kernel distance undefined, and those networks stay out of the
#   means. The gradient-based criteria never disconnected the network in this sweep.
# phases.done("pruning at init")

# %% [markdown]
# ## 3 · Look at the kernels yourself
#
# Pick a criterion and a sparsity: the heatmaps show $\Theta$ of the dense network, $\Theta'$ of the pruned one (same
# colour scale) and their difference, on the probe batch of the last initialisation. The $C\times C$ blocks along the
# diagonal are the per-sample kernels; off-diagonal blocks couple different samples. (In a static copy of this notebook
# only the initial choice is drawn.)

# %%
explorer = NTKExplorer(dense, scores_by_criterion, probe_x[: min(8, PROBE_SIZE)], SPARSITIES,
                       params="prunable", classes=data.num_classes)
display(explorer.widget("crop", target))
explorer.figure("random", target).savefig(ck.paths.output_file(OUTPUT_DIR, "01_kernels_random.png"), dpi=110)
plt.close("all")
phases.done("kernels")

# %% [markdown]
# ## 4 · Results

# %%
gf_change = {c: {str(p): float(summary.loc[(c, p), "gf_change"]) for p in SPARSITIES} for c in CRITERIA}
results = {
    "phase_seconds": phases.seconds,
    "profile": PROFILE, "data": DATA, "model": MODEL, "width": WIDTH, "hardware": ck.hardware.describe(),
    "identity": {"max_relative_error": max_rel_error, "checks": len(checks), "dtype": "float64"},
    "criteria": CRITERIA, "sparsities": SPARSITIES,
    "gf_change": gf_change,
    "gf_change_probe": {c: {str(p): float(summary.loc[(c, p), "gf_change_probe"]) for p in SPARSITIES} for c in CRITERIA},
    "kernel_distance": {c: {str(p): float(summary.loc[(c, p), "kernel_distance"]) for p in SPARSITIES} for c in CRITERIA},
    "disconnected": [dict(criterion=c, sparsity=float(p), init=int(i)) for c, p, i in zip(cut.criterion, cut.sparsity, cut.init)],
    "trace_ratio": {c: {str(p): float(summary.loc[(c, p), "trace_ratio"]) for p in SPARSITIES} for c in CRITERIA},
    "least_moved_by": best, "crop_wins": crop_wins,
    "figures": [str(ck.paths.output_file(OUTPUT_DIR, f)) for f in ("01_identity.png", "01_sweep.png", "01_spectrum.png", "01_kernels_random.png")],
    "process_cpu_seconds": time.process_time(),
}
print(f"CPU time of this kernel so far: {results['process_cpu_seconds']:.0f} s on {ck.hardware.describe()}")
print("wrote", ck.notebook.save_results(OUTPUT_DIR, "01_gradient_flow_and_ntk", results))

# %% [markdown]
# ## Try this
#
# * Set `MODEL = "mlp"` and `DATA = "mnist1d"`: without BatchNorm, does magnitude pruning still keep the kernel's shape?
# * Raise `SCORE_BATCHES`: does CroP's advantage on the held-out batch grow when it scores on more data?
# * Replace `"random"` by `"synflow"` in `CRITERIA` (any key of `ck.scores.WEIGHT_SCORES` works), or score CroP on a
#   network trained for one epoch (EarlyCroP's setting, lesson 02) and compare the kernel distances.
