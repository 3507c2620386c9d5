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
# # 06 · What does a pruning score really know?
#
# **Learning goal.** Ask of a pruning score not *how well* its network trains but *what it knew*: which weights to
# keep, or only how many to keep in each layer. See which layers each criterion starves, disturb each prune in three
# ways and read what survives, and decide the question EarlyCroP raises: does a score applied at the rich → lazy
# transition ($\theta_t$, lesson 02) know *which* weights, where scores at initialisation do not?
#
# **The idea.** Frankle, Dziugaite, Roy & Carbin ("Pruning Neural Networks at Initialization: Why are We Missing the
# Mark?", ICLR 2021) prune at initialisation with SNIP, GraSP, SynFlow and magnitude, then disturb the prune:
#
# * **shuffle**: each layer's mask is permuted at random — the layer keeps exactly as many weights, but not the ones
#   the score chose;
# * **reinit**: the same masks on freshly drawn weights;
# * **invert**: keep the *lowest*-scored weights at the same budget.
#
# Their finding: the at-init methods survive shuffling and re-initialisation — the score decided only *how many*
# weights each layer keeps (Su et al., "Sanity-Checking Pruning Methods: Random Tickets can Win the Jackpot",
# NeurIPS 2020, reach the same verdict with layer-wise random tickets) — while magnitude pruning after training and
# lottery tickets do not; GraSP even survives inversion. Here every disturbance is a run option
# (`cropkit.run(..., sanity="shuffle" | "reinit" | "invert")`), so each disturbed run is cached and replayed like any
# other, and the verdicts come from rules in `cropkit.experiments.verdicts`, fixed before the runs.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop), and cropkit.run takes its other defaults from it; the harness (--profile smoke or paper) applies 06_what_scores_know.profiles.json on top
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DATA = "mnist1d"  # type: str  dataset name (with the model, width and detector: the setting of lessons 02-04)
MODEL = "cnn"  # type: str  model name
WIDTH = 0.5  # type: float  width multiplier
BATCH_SIZE = 128  # type: int  training batch size of every run
LIMIT = None  # type: int|None  training samples kept, the first ones; None keeps them all
SCORE_BATCHES = 4  # type: int  training batches the pruning scores see
SPARSITY = 0.8  # type: float  target weight sparsity of every prune
EPOCHS = 20  # type: int  epochs E after every prune (every row of the ablation table trains as long)
SEEDS = [0, 1, 2, 3, 4]  # type: list  seeds of every configuration of the ablation table (five: the spread decides the verdicts)
METHODS = ["snip", "grasp", "crop-u", "earlycrop-u", "earlycrop-u-magnitude"]  # type: list  methods disturbed (one-shot unstructured prunes: at init, and at the epoch the detector fires)
CHECKS = ["shuffle", "reinit", "invert"]  # type: list  disturbances of each prune (cropkit.core.sanity)
RESOLUTION = 0.02  # type: float  a tie counts as not hurt only when the spread of the seeds is at most this (accuracy)
RULE = "reference"  # type: str  rule of the EarlyCroP detector (lesson 02)
THRESHOLD = 0.7  # type: float|None  threshold tau of the detector rule; None takes the rule default
MAX_DENSE_EPOCHS = 10  # type: int  longest dense phase of EarlyCroP before the prune is forced
LTR_ROUNDS = 3  # type: int  prune-rewind-retrain rounds of LTR (its profile only: one seed)
REWIND_EPOCH = 1  # type: int  epoch LTR rewinds to
STRUCTURED = ["random-s", "snap", "crop-s", "earlycrop-s", "earlybird", "gatedecorators"]  # type: list  structured methods whose layouts are drawn (one seed; the layout is fixed at the prune)
STRUCTURED_EPOCHS = 1  # type: int  epochs after the structured prunes (their layout is decided at the prune; lesson 04 trains them)
SENSITIVITY_SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.99]  # type: list  sparsities of the layer-sensitivity heatmap
FINETUNE_EPOCHS = 1  # type: int  epochs of fine-tuning in the second heatmap
THREADS = 1  # type: int|None  torch CPU threads per run; None lets torch choose
WORKERS = 2  # type: int  runs at once, each in its own one-thread process (2 cores: two runs side by side)
CACHE = True  # type: bool  replay runs stored in outputs/cache; False trains everything again

# %%
import copy
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import cropkit as ck
from cropkit.core import measure, schedules
from cropkit.experiments import grid, verdicts
from cropkit.experiments.runs import settings as run_settings
from cropkit.methods.registry import LABELS
from cropkit.training.sensitivity import layer_sensitivity

STEM = "06_what_scores_know"
phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
if THREADS:
    torch.set_num_threads(THREADS)
unknown = [c for c in CHECKS if c not in verdicts.CHECKS]
if unknown:
    raise ValueError(f"CHECKS {unknown} are not disturbances; choose from {list(verdicts.CHECKS)}")
RUN_OPTIONS = dict(profile=PROFILE, data=DATA, model=MODEL, width=WIDTH, batch_size=BATCH_SIZE, limit=LIMIT,
                   score_batches=SCORE_BATCHES, threads=THREADS or 1, cache=CACHE, progress=False)
DETECTOR = dict(rule=RULE, threshold=THRESHOLD, max_dense_epochs=MAX_DENSE_EPOCHS)
HARDWARE = ck.hardware.describe()
print("measured on:", HARDWARE)


def detector_options(method):
    """The detector's options for the methods that have one (EarlyCroP's, EarlyBird's), none for the others."""
    return DETECTOR if method.startswith("earlycrop") else (
        {"max_dense_epochs": MAX_DENSE_EPOCHS} if method == "earlybird" else {})


def plan(methods, check, seeds, epochs, **extra):
    """The runs of ``methods`` × ``seeds`` with the prune disturbed by ``check`` ("none": as the method does it)."""
    return [job for m in methods for job in grid.plan([m], [SPARSITY], seeds, epochs=epochs, sanity=check,
                                                        **detector_options(m), **extra, **RUN_OPTIONS)]


# Every run of the lesson, planned (validated) before any of it trains
ABLATION = {check: plan(METHODS, check, SEEDS, EPOCHS) for check in ["none", *CHECKS]}
LTR_JOBS = grid.plan(["ltr"], [SPARSITY], SEEDS[:1], epochs=EPOCHS, ltr_rounds=LTR_ROUNDS,
                     rewind_epoch=REWIND_EPOCH, **RUN_OPTIONS)
STRUCTURED_JOBS = [job for m in STRUCTURED for job in grid.plan([m], [SPARSITY], SEEDS[:1], epochs=STRUCTURED_EPOCHS,
                                                                 **detector_options(m), **RUN_OPTIONS)]
DENSE_JOBS = grid.plan(["dense"], seeds=SEEDS, epochs=EPOCHS, **RUN_OPTIONS)
EVERY_JOB = [*DENSE_JOBS, *(job for jobs in ABLATION.values() for job in jobs), *LTR_JOBS, *STRUCTURED_JOBS]
print(f"{len(EVERY_JOB)} runs, {sum(job.cached for job in EVERY_JOB)} of them cached; "
      f"{WORKERS} at a time, {THREADS or 1} thread(s) each")
phases.done("setup")

# %% [markdown]
# ## 1 · The runs
#
# Dense, every method of `METHODS` as it is and under each disturbance of `CHECKS`, for every seed; LTR and the
# structured methods once, for their layouts. Each disturbed run trains exactly as long as the undisturbed one: the
# same $E$ epochs after the prune (and, for EarlyCroP, the same dense phase: the detector fires before the prune is
# disturbed). Runs go `WORKERS` at a time; `ck.run` caches each by its whole configuration, the disturbance
# included, so executing this notebook again replays them.

# %%
results = grid.execute(EVERY_JOB, "processes" if WORKERS > 1 else "here", workers=WORKERS)
by_key = {job.key: result for job, result in zip(EVERY_JOB, results)}
rows = []
for check, jobs in [("none", DENSE_JOBS), *ABLATION.items()]:
    for job in jobs:
        r = by_key[job.key]
        rows.append(dict(method=job.entry, check=check, seed=job.seed, test_acc=r.test_acc,
                         train_loss_end=r.history[-1]["train_loss"], weight_sparsity=r.weight_sparsity,
                         epochs_trained=r.epochs_trained, prune_epoch=r.prune_epoch, forced=bool(r.forced)))
RUNS = pd.DataFrame(rows)
phases.done("runs")

# %% [markdown]
# ## 2 · Where each score puts its budget
#
# The share of each layer's weights that survives, for every unstructured criterion at the same global budget
# (SynFlow scored here, at initialisation, with its 100 data-free rounds; the others are the runs above, seed
# `SEEDS[0]`) and, on the right, the share of each node layer's channels kept by the structured methods. A global
# ranking can spend the budget very unevenly: a layer kept at 1 % is a bottleneck every prediction must pass.

# %%
seed0 = SEEDS[0]
run_of = {(job.entry, c, job.seed): by_key[job.key] for c, jobs in ABLATION.items() for job in jobs}
profile_runs = {m: run_of[(m, "none", seed0)] for m in METHODS}
profile_runs["ltr"] = by_key[LTR_JOBS[0].key]

data0 = ck.data.load(DATA, batch_size=BATCH_SIZE, seed=seed0, limit=LIMIT)
net0 = ck.models.build(MODEL, data0.input_shape, data0.num_classes, width=WIDTH, seed=seed0)
synflow_net = schedules.synflow(copy.deepcopy(net0), ck.data.take(data0.train, 1), SPARSITY)
density = {LABELS[m]: {layer: kept / dense for layer, (kept, dense) in r.weight_layout.items()}
           for m, r in profile_runs.items()}
density["SynFlow"] = {layer: kept / dense for layer, (kept, dense) in measure.kept_weights(synflow_net, net0).items()}
density = pd.DataFrame(density)  # rows: layers, columns: criteria
layer_sizes = {layer: dense for layer, (_, dense) in profile_runs[METHODS[0]].weight_layout.items()}
modules0 = dict(net0.named_modules())
KIND = {layer: type(modules0[layer]).__name__ for layer in layer_sizes}  # the zoo's cnn: Conv1d layers, then Linear
print("the prunable layers: " + ", ".join(f"`{layer}` {KIND[layer]} ({n:,} weights)" for layer, n in layer_sizes.items()))
nodes = pd.DataFrame({LABELS[m]: {layer: kept / dense for layer, (kept, dense) in by_key[job.key].layout.items()}
                      for m, job in zip(STRUCTURED, STRUCTURED_JOBS)})
display((100 * density).round(2).rename_axis(f"% of the layer's weights kept (target {SPARSITY:.0%} sparsity)"))
display((100 * nodes).round(1).rename_axis("% of the layer's nodes kept"))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 2]})
x = np.arange(len(density))
for i, column in enumerate(density.columns):
    ax1.plot(x, 100 * density[column], "o-", label=column, color=f"C{i}")
ax1.axhline(100 * (1 - SPARSITY), color="grey", ls="--", lw=0.8, label="uniform")
ax1.set(yscale="log", xticks=x, ylabel="weights kept (%, log scale)",
        title=f"unstructured, {SPARSITY:.0%} of all weights pruned")
ax1.set_xticklabels([f"{layer}: {KIND[layer]}\n{layer_sizes[layer]:,} w" for layer in density.index], fontsize=8)
ax1.legend(fontsize=8, ncol=2)
ax1.grid(alpha=0.3, which="both")
xn = np.arange(len(nodes))
for i, column in enumerate(nodes.columns):
    ax2.plot(xn, 100 * nodes[column], "s-", label=column, color=f"C{i}")
ax2.set(xticks=xn, ylabel="nodes kept (%)", ylim=(0, 105), title="structured (channels), same weight budget")
ax2.set_xticklabels([f"{layer}: {KIND[layer]}" for layer in nodes.index], fontsize=8)
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
fig.suptitle(f"{DATA} · {MODEL} ×{WIDTH} · seed {seed0}", fontsize=10)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "06_profiles.png"), dpi=100)
plt.show()
phases.done("profiles")

# %% [markdown]
# ## 3 · The sanity checks
#
# Each method's test accuracy as it is and under each disturbance (mean ± std over `SEEDS`), and the training loss
# at the end: a row whose loss is far above dense's is still learning after $E$ epochs, and its accuracy is a lower
# bound. The error bars are the seeds' standard deviation.

# %%
ORDER = ["none", *CHECKS]
summary = (RUNS.groupby(["method", "check"], sort=False)
           .agg(acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"), loss_end=("train_loss_end", "mean"),
                epochs=("epochs_trained", "mean"), forced=("forced", "sum"), runs=("seed", "count"))
           .fillna({"acc_std": 0.0}).reset_index())
table = summary[summary.method != "dense"].pivot(index="method", columns="check", values="acc_mean")[ORDER]
table_std = summary[summary.method != "dense"].pivot(index="method", columns="check", values="acc_std")[ORDER]
shown = pd.DataFrame({c: [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(table.loc[METHODS, c],
                                                                        table_std.loc[METHODS, c])] for c in ORDER},
                     index=[LABELS[m] for m in METHODS])
dense_acc = RUNS[RUNS.method == "dense"].test_acc
print(f"test accuracy (%), {len(SEEDS)} seeds, {SPARSITY:.0%} sparsity, {EPOCHS} epochs after the prune; "
      f"dense ({EPOCHS} epochs): {100 * dense_acc.mean():.1f} ± {100 * dense_acc.std():.1f}")
display(shown)
losses = summary.pivot(index="method", columns="check", values="loss_end")
print("training loss at the end (mean over seeds): "
      + "; ".join(f"{LABELS[m]} " + ", ".join(f"{c} {losses.loc[m, c]:.3f}" for c in ORDER) for m in METHODS)
      + f"; dense {losses.loc['dense', 'none']:.3f}")
early = RUNS[RUNS.method.str.startswith("earlycrop")]
fired = early[~early.forced]
print(f"EarlyCroP's detector: {len(fired)} of {len(early)} runs fired (epochs {sorted(set(fired.prune_epoch))}), "
      f"{int(early.forced.sum())} forced at the cap of {MAX_DENSE_EPOCHS}")

fig, ax = plt.subplots(figsize=(12, 4))
width = 0.8 / len(ORDER)
for j, check in enumerate(ORDER):
    ax.bar(np.arange(len(METHODS)) + (j - (len(ORDER) - 1) / 2) * width, 100 * table.loc[METHODS, check],
           width, yerr=100 * table_std.loc[METHODS, check], capsize=3, label="as is" if check == "none" else check,
           color=f"C{j}")
ax.axhline(100 * dense_acc.mean(), color="black", lw=1, ls="--", label=f"dense, {EPOCHS} epochs")
ax.set(xticks=np.arange(len(METHODS)), ylabel="test accuracy (%), mean ± std over seeds",
       title=f"What survives a disturbance ({DATA}, {MODEL} ×{WIDTH}, {SPARSITY:.0%} sparsity, {len(SEEDS)} seeds)")
ax.set_xticklabels([LABELS[m] for m in METHODS])
ax.set_ylim(0, 105)
ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.1))
ax.grid(alpha=0.3, axis="y")
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "06_ablation.png"), dpi=100)
plt.show()
phases.done("ablation table")

# %% [markdown]
# ## 4 · The verdicts
#
# Frankle et al.'s claims, each decided by `cropkit.experiments.verdicts.sanity_claims` with the rule fixed before
# the runs: a disturbance **hurts** a method when its mean accuracy falls by more than the seeds' spread
# $\sqrt{\sigma_{\text{as is}}^2 + \sigma_{\text{disturbed}}^2}$; it **does not hurt** when it falls by less *and* that
# spread is at most `RESOLUTION` (a tie on wide spreads shows nothing); otherwise the check is *undecided*. A claim is
# reproduced when every method it names shows the expected outcome, not reproduced when one shows the opposite.
# "Magnitude after training" is magnitude at EarlyCroP's $\theta_t$ (`earlycrop-u-magnitude`): a few epochs of
# training, not a converged network.

# %%
accuracy = {(m, c): list(RUNS[(RUNS.method == m) & (RUNS.check == c)].test_acc) for m in METHODS for c in ORDER}
claims = verdicts.sanity_claims(accuracy, RESOLUTION)
claims_table = pd.DataFrame([{"claim (Frankle et al. 2021)": c["claim"], "verdict": c["verdict"],
                              "drop per method (points, ± spread)": "; ".join(
                                  f"{LABELS[m]} {100 * p['drop']:+.1f} ± {100 * p['spread']:.1f} ({p['verdict']})"
                                  for m, p in c["methods"].items())} for c in claims])
display(claims_table)
knows = {m: verdicts.knows_which(accuracy, m, RESOLUTION) for m in METHODS if (m, "shuffle") in accuracy}
for m, k in knows.items():
    print(f"does {LABELS[m]} know which weights (shuffling within layers, drop {100 * k['drop']:+.1f} ± "
          f"{100 * k['spread']:.1f} points)? {k['answer']}")
phases.done("verdicts")

# %% [markdown]
# ## 5 · Layer sensitivity
#
# Distiller's question, per layer: prune *one* layer alone (by magnitude) to each sparsity and measure the accuracy
# drop of a dense network trained for $E$ epochs — right after the prune, and after `FINETUNE_EPOCHS` epoch(s) of
# fine-tuning (`cropkit.training.sensitivity.layer_sensitivity`; the reference is the unpruned network through the
# same fine-tuning). A layer whose drop is large at low sparsity is one no global ranking may starve.

# %%
dense_settings = run_settings("dense", **{k: v for k, v in RUN_OPTIONS.items()
                                          if k not in ("threads", "cache", "progress")}, epochs=EPOCHS)
trained = copy.deepcopy(net0)
ck.train.Trainer(trained, data0, EPOCHS, lr=dense_settings.lr, weight_decay=dense_settings.weight_decay,
                 schedule=dense_settings.schedule, seed=seed0, progress=False).fit()
with warnings.catch_warnings(record=True) as caught:  # a layer too small for a sparsity: said once, as a sentence
    warnings.simplefilter("always")
    sensitivity = {ft: layer_sensitivity(trained, data0, SENSITIVITY_SPARSITIES, "magnitude", finetune_epochs=ft,
                                         lr=dense_settings.lr, seed=seed0)
                   for ft in (0, FINETUNE_EPOCHS)}
for message in dict.fromkeys(str(w.message) for w in caught):
    print("note:", message)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharey=True)
for ax, (ft, frame) in zip(axes, sensitivity.items()):
    grid_ = frame.pivot(index="layer", columns="sparsity", values="drop").loc[list(layer_sizes)]
    image = ax.imshow(100 * grid_.values, cmap="magma_r", vmin=0, vmax=max(1.0, 100 * sensitivity[0]["drop"].max()),
                      aspect="auto")
    for (i, j), value in np.ndenumerate(100 * grid_.values):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                color="white" if value > 50 * max(0.01, sensitivity[0]["drop"].max()) else "black")
    ax.set(xticks=range(grid_.shape[1]), xticklabels=[f"{s:.0%}" for s in grid_.columns], yticks=range(len(grid_)),
           yticklabels=[f"{layer}: {KIND[layer]} ({layer_sizes[layer]:,} w)" for layer in grid_.index],
           xlabel="sparsity of that one layer",
           title=("no fine-tuning" if ft == 0 else f"{ft} epoch(s) of fine-tuning")
           + f" (reference {100 * frame.attrs['reference']:.1f} %)")
fig.colorbar(image, ax=axes, label="accuracy drop (points)")
fig.suptitle(f"Layer sensitivity: one layer pruned by magnitude, dense {MODEL} ×{WIDTH} after {EPOCHS} epochs",
             fontsize=10, y=1.04)
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "06_sensitivity.png"), dpi=100, bbox_inches="tight")
plt.show()
phases.done("sensitivity")

# %% [markdown]
# ## What to notice
#
# Written by the next cell from this run's numbers (they change with the profile, the seeds and your settings).

# %%
def pm(method, check):
    return f"{100 * table.loc[method, check]:.1f} ± {100 * table_std.loc[method, check]:.1f} %"


thinnest = {column: (density[column].idxmin(), density[column].min()) for column in density.columns}
no_ft = sensitivity[0]
worst = no_ft[no_ft.sparsity == max(SENSITIVITY_SPARSITIES)].sort_values("drop", ascending=False).iloc[0]
verdict_of = {c["claim"]: c["verdict"] for c in claims}
DISTURBED = {"shuffle": "Shuffling within layers** (the same count per layer, other weights)",
             "reinit": "Re-initialising** (the same masks, fresh weights)",
             "invert": "Inverting** (the lowest-scored weights kept)"}
notice = [
    f"**Where the budget goes.** At {SPARSITY:.0%} overall, the thinnest layer kept (seed {seed0}): "
    + ", ".join(f"{name} `{layer}` ({KIND[layer]}) {100 * share:.2g} %" for name, (layer, share) in thinnest.items())
    + f". A uniform prune would keep {100 * (1 - SPARSITY):.0f} % of every layer.",
    "**Frankle et al.'s claims on this setting:** " + "; ".join(f"{claim}: *{verdict}*"
                                                  for claim, verdict in verdict_of.items()) + ".",
    *(f"**{DISTURBED[c]}: " + "; ".join(f"{LABELS[m]} {pm(m, 'none')} → {pm(m, c)}" for m in METHODS) + "."
      for c in CHECKS),
    "**Does the prune know which weights?** "
    + "; ".join(f"{LABELS[m]}: {k['answer']} (drop {100 * k['drop']:+.1f} ± {100 * k['spread']:.1f} points)"
                for m, k in knows.items()) + ".",
    f"**Layer sensitivity.** With no fine-tuning, layer `{worst.layer}` alone at {worst.sparsity:.0%} costs "
    f"{100 * worst['drop']:.1f} points; after {FINETUNE_EPOCHS} epoch(s) of fine-tuning the largest drop at that "
    f"sparsity is {100 * sensitivity[FINETUNE_EPOCHS][sensitivity[FINETUNE_EPOCHS].sparsity == max(SENSITIVITY_SPARSITIES)]['drop'].max():.1f} points.",
    f"**Has training converged?** Training loss at the end: dense {losses.loc['dense', 'none']:.3f}; as-is rows "
    + ", ".join(f"{LABELS[m]} {losses.loc[m, 'none']:.3f}" for m in METHODS)
    + f". Rows far above dense's are still learning after {EPOCHS} epochs: the comparison is at an equal budget, "
    "not at convergence.",
]
notice_text = ck.notebook.show_markdown(notice)

# %% [markdown]
# What is known and what is not. The checks separate *which weights* from *how many per layer* only at this budget:
# short training can favour a prune that keeps trainable weights over one that keeps the "right" ones, and this is
# one small 1-D convnet, not the paper's CIFAR networks. Frankle et al. trained to convergence on CIFAR-10 and
# ImageNet; the `paper` profile runs this lesson on CIFAR-10 with ResNet18 (never run here: no GPU, no CIFAR offline).
#
# ## Try this
# * `SPARSITY = 0.95`: do the at-init methods still survive shuffling when the budget is tight?
# * `EPOCHS = 40`: do the verdicts hold once the sparse phase has converged (compare the training losses)?
# * Add `"random-u"` to `METHODS`: a random prune shuffled is the same random prune — what does the rule say?
# * `CHECKS = ["shuffle"]` runs a third of the disturbed runs.

# %%
results = {
    "profile": PROFILE, "data": DATA, "model": MODEL, "width": WIDTH, "sparsity": SPARSITY, "epochs": EPOCHS,
    "seeds": SEEDS, "methods": METHODS, "checks": CHECKS, "resolution": RESOLUTION, "threads": THREADS,
    "workers": WORKERS, "hardware": HARDWARE,
    "runs": RUNS.to_dict(orient="records"),
    "weight_layouts": {m: r.weight_layout for m, r in profile_runs.items()},
    "synflow_layout": {layer: list(v) for layer, v in measure.kept_weights(synflow_net, net0).items()},
    "node_layouts": {m: by_key[job.key].layout for m, job in zip(STRUCTURED, STRUCTURED_JOBS)},
    "claims": claims, "knows_which": knows,
    "verdicts": {**{c["claim"]: c["verdict"] for c in claims},
                 **{f"{LABELS[m]} knows which weights": k["answer"] for m, k in knows.items()}},
    "headline": "; ".join(f"{LABELS[m]} knows which weights: {k['answer']}" for m, k in knows.items()
                          if m.startswith("earlycrop")) or f"{len(claims)} claims checked",
    "sensitivity": {str(ft): frame.to_dict(orient="records") for ft, frame in sensitivity.items()},
    "sensitivity_reference": {str(ft): frame.attrs["reference"] for ft, frame in sensitivity.items()},
    "notice": notice_text, "phase_seconds": phases.seconds,
}
print("wrote", ck.notebook.save_results(OUTPUT_DIR, STEM, results))
