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
# # 04 · Structured pruning: fewer channels, less time, less memory
#
# **Learning goal.** See why only *structured* pruning makes a network cheaper to train on ordinary hardware:
# removing whole channels shrinks every tensor — parameters, FLOPs, the time of a training step and its peak
# memory — while masking single weights (unstructured pruning) leaves the dense tensors, and so the cost, as
# they were. Then compare the structured methods of the paper (Random-S, SNAP, CroP-S, CroPit-S, EarlyCroP-S,
# EarlyBird, GateDecorators, EfficientConvNets) against dense training in the paper's table.
#
# **The idea.** A *node* is one output channel of a convolution (or one neuron of a hidden linear layer).
# A node criterion scores every node; `cropkit.core.prune.structured` removes the lowest-scoring nodes until the
# target weight sparsity is reached, and rebuilds the network with physically smaller tensors. Channels that
# meet in a residual add must go together, with the same indices in every layer of the group (traced with
# torch-pruning's `DependencyGraph`). Because a removed channel takes its whole filter *and* the matching input
# slice of the next layer with it, the kept network is a genuinely smaller dense network.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop), and cropkit.run takes its other defaults from it; the harness (--profile smoke or paper) applies 04_structured_pruning.profiles.json on top (paper: CIFAR-10, ResNet18 at 95 %, VGG16 at 98 %)
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DATA = "mnist1d"  # type: str  dataset of the method tables and of section 4 (lesson 02 setting)
TABLES = [["cnn", 0.9]]  # type: list  [[model, target weight sparsity], ...] compared in the paper table
WIDTH = 0.5  # type: float  width multiplier of the table models
EPOCHS = 40  # type: int  epochs after pruning (40: dense has converged, the pruned rows are close; their training loss at the end is printed beside dense)
SEEDS = [0, 1, 2]  # type: list  seeds per method, e.g. [0] for a quick table
OPTIONS = {"batch_size": 128, "lr": 0.02, "rule": "reference", "threshold": 0.7, "max_dense_epochs": 10}  # type: dict  options of every cropkit.run below (lesson 02 batch size and EarlyCroP-S detector: the reference rule at tau 0.7; peak learning rate 0.02, at which every row converges in 40 epochs)
SLOW_LR = 0.002  # type: float  peak learning rate of the comparison rows of section 3 (the cpu profile default, at which EarlyCroP-S had not converged after 40 epochs)
EXPLORER_MODELS = ["resnet18", "vgg16"]  # type: list  models of the explorer dropdown and of its sweep
EXPLORER_CRITERION = "crop_nodes"  # type: str  criterion the explorer starts with (a key of cropkit.core.scores.NODE_SCORES)
EXPLORER_WIDTH = 0.25  # type: float  width of the explorer ResNet18 / VGG16
EXPLORER_BATCH = 8  # type: int  samples in the batch the explorer scores and times
EXPLORER_DATA = "synthetic"  # type: str  what the explorer scores on: synthetic (one batch of random inputs) or a dataset name
EXPLORER_THREADS = 1  # type: int|None  torch CPU threads of the explorer (one is steadier for timing); None leaves them
SWEEP = [0.3, 0.5, 0.7, 0.8, 0.9, 0.95]  # type: list  target weight sparsities of the explorer sweep
WIDE_WIDTH = 2.0  # type: float  width of the wide model pruned in section 4
WIDE_SPARSITY = 0.9  # type: float  target weight sparsity of the wide model of section 4
NARROW_WIDTHS = [0.25, 0.375, 0.5, 0.625, 0.75, 1.0]  # type: list  dense widths measured against the pruned wide model
LAYER_FLOOR = 0.1  # type: float  least fraction of every layer nodes kept by the EarlyCroP-S row with a floor (0 is the paper rule)
THREADS = 1  # type: int|None  torch CPU threads of every run; None lets torch choose
WORKERS = 2  # type: int  runs of section 3 trained at once, each in its own process with THREADS threads (2 cores: two runs side by side)

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display

import cropkit as ck
from cropkit.experiments import grid, profiles
from cropkit.methods.registry import FAMILIES, LABELS
from cropkit.experiments.results import PAPER_COLUMNS, runs_frame

phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
run_cfg = profiles.settings("run", PROFILE)
RUN_OPTIONS = dict(profile=PROFILE, epochs=EPOCHS, threads=THREADS, **OPTIONS)
batch_size = RUN_OPTIONS.get("batch_size", run_cfg.batch_size)
if THREADS:
    torch.set_num_threads(THREADS)
print("measured on:", ck.hardware.describe())
phases.done("setup")

# %% [markdown]
# ## 1 · The explorer: move the slider
#
# Pick a model (the CIFAR forms of ResNet18 and VGG16), a node criterion (the keys of
# `cropkit.core.scores.NODE_SCORES`), a budget and a target sparsity. For each choice the explorer scores the nodes of
# the dense network *at initialisation* (once per model and criterion — the first visit of a criterion takes a
# few seconds), prunes a copy with `cropkit.core.prune.structured`, and measures the smaller network against the dense
# one on this machine: kept channels per layer, parameters, FLOPs per sample, the median time of a full training
# step (forward, backward, Adam) and the peak memory of one step.
#
# * **budget** `weights` reaches the target *weight* sparsity (the paper's axis); `nodes` removes that fraction of
#   nodes; `flops` removes nodes until the FLOPs fall by that fraction, ranking nodes by score per FLOP saved.
# * With `EXPLORER_DATA = "synthetic"` (the `cpu` value) the explorer scores on one batch of random CIFAR-shaped
#   inputs: it is about the *shape* and the *cost* of the pruned network, not its accuracy (sections 3 and 4 train
#   real networks). `bn_nodes` (EarlyBird's |γ|) sees all γ = 1 at initialisation, so its ties are broken by
#   position: it is meant for trained networks.
# * Batch-time ratios are wall-clock measurements of a few steps (on a CPU profile with one thread, which is
#   steadier for such small steps): on a shared or busy machine they are noisy; parameter, FLOP and memory
#   ratios are exact or nearly so.

# %%
explorer_batches = None  # None: one seeded batch of random inputs (shape and cost only)
if EXPLORER_DATA != "synthetic":
    explorer_data = ck.data.load(EXPLORER_DATA, batch_size=EXPLORER_BATCH, seed=0)
    explorer_batches = ck.data.take(explorer_data.train, 1)
explorer = ck.explorer.StructuredExplorer(model_names=EXPLORER_MODELS, criterion=EXPLORER_CRITERION,
                                         width=EXPLORER_WIDTH, batch_size=EXPLORER_BATCH,
                                         batches=explorer_batches, threads=EXPLORER_THREADS, sparsity=0.5)
explorer.update()  # draw the current choice now, so that the executed notebook shows it too
display(explorer.widget)

# %% [markdown]
# The same state as a static figure (this is what the executed copy and the summary report show; the widget
# above is the live version):

# %%
state = explorer.last
fig = explorer.figure(state)
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "04_explorer.png"), dpi=100)
display(Image(filename=str(ck.paths.output_file(OUTPUT_DIR, "04_explorer.png"))))  # a bare Figure (not pyplot's) would show only its text repr
print(f"{state['model']} (width {state['width']}), {state['criterion']}, weight sparsity "
      f"{state['weight_sparsity']:.3f}, node sparsity {state['node_sparsity']:.3f}")
print(ck.explorer.StructuredExplorer.summary_text(state))
phases.done("explorer")

# %% [markdown]
# ## 2 · Sweeping the slider
#
# The explorer's numbers for every model over a range of target weight sparsities (`SWEEP`), with `EXPLORER_CRITERION`.
# The dashed line is `1 − sparsity`: the parameter ratio sits on it by construction (the budget counts prunable
# weights; biases and norm layers shrink with their channels).

# %%
sweep = []
for name in EXPLORER_MODELS:
    for s in explorer.sweep(name, EXPLORER_CRITERION, SWEEP):
        sweep.append({k: s[k] for k in ("model", "target_sparsity", "weight_sparsity", "node_sparsity",
                                        "params_ratio", "flops_ratio", "batch_time_ratio", "peak_memory_ratio")})
sweep = pd.DataFrame(sweep)
display(sweep.round(3))

fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharex=True)
for ax, key, title in zip(axes, ["params_ratio", "flops_ratio", "batch_time_ratio", "peak_memory_ratio"],
                          ["parameters", "FLOPs / sample", "batch time (measured)", "peak memory"]):
    for name, part in sweep.groupby("model", sort=False):
        ax.plot(part["target_sparsity"], part[key], "o-", label=name)
    ax.plot(sweep["target_sparsity"], 1 - sweep["target_sparsity"], "k--", lw=0.8, label="1 − sparsity")
    ax.set(title=f"{title} ÷ dense", xlabel="target weight sparsity", ylim=(0, None))
axes[0].legend(fontsize=8)
fig.suptitle(f"{EXPLORER_CRITERION} at initialisation, width {EXPLORER_WIDTH}, "
             f"batch {EXPLORER_BATCH} on {explorer.last['hardware']}", fontsize=9)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "04_sweep.png"), dpi=100)
plt.show()
for name, part in sweep.groupby("model", sort=False):
    last = part.iloc[-1]
    print(f"{name} at {last['target_sparsity']:.2f} weight sparsity: node sparsity {last['node_sparsity']:.2f}, "
          f"FLOPs {last['flops_ratio']:.3f}×, batch time {last['batch_time_ratio']:.2f}×, "
          f"peak memory {last['peak_memory_ratio']:.3f}× dense")
phases.done("sweep")

# %% [markdown]
# ## 3 · The structured methods, trained, in the paper's table
#
# Every method below is trained at the same target *weight* sparsity: dense (the reference), one unstructured
# method (CroP-U, masks), and the eight structured methods. The cell plans these runs — and the EarlyCroP-S rows of
# the floor and learning-rate sections further down — with `cropkit.experiments.grid` and trains them `WORKERS` at a
# time, each in its own process; `cropkit.compare` then makes the paper's table from the cache. The columns are the
# paper's: accuracy, the achieved weight and node sparsity, training time, time of one training step, peak memory
# of one training step, disk size and estimated emissions (codecarbon; an estimate on a CPU). With `WORKERS = 2` the
# time columns were measured with another run busy on the other core. When a method ran with several seeds a cell
# reads mean ± std. Runs are cached in `outputs/cache`, so re-executing replays them.
# Under the `cpu` profile the table uses lesson 02's setting — `mnist1d`, batch 128, EarlyCroP-S's detector on the
# reference rule at $\tau = 0.7$ with at most 10 dense epochs — in which the detector fires while the network is
# still learning (lesson 02, section 2).

# %%
UNSTRUCTURED = ["crop-u"]
STRUCTURED = ["random-s", "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird", "gatedecorators",
              "efficientconvnets"]
SHOWN = ["Type", "Method"] + [header for _, header, *_ in PAPER_COLUMNS] + ["FLOPs", "Epochs", "Prune epoch"]

table_model, table_sparsity = TABLES[0]
TABLE_JOBS = {f"{model}@{sparsity}": grid.plan(["dense", *UNSTRUCTURED, *STRUCTURED], [sparsity], SEEDS, data=DATA,
                                              model=model, width=WIDTH, progress=False, **RUN_OPTIONS)
              for model, sparsity in TABLES}


def earlycrop_s_jobs(**changed):
    """EarlyCroP-S on the first table's net and sparsity, with some of the run options changed."""
    return grid.plan(["earlycrop-s"], [table_sparsity], SEEDS, data=DATA, model=table_model, width=WIDTH,
                     progress=False, **{**RUN_OPTIONS, **changed})


SECTION_JOBS = {  # the rows further down that change one option: the per-layer floor, the slow learning rate
    "floor": earlycrop_s_jobs(layer_floor=LAYER_FLOOR),
    "slow": earlycrop_s_jobs(lr=SLOW_LR),
    "slow floor": earlycrop_s_jobs(lr=SLOW_LR, layer_floor=LAYER_FLOOR)}
every_job = list({job.key: job for jobs in [*TABLE_JOBS.values(), *SECTION_JOBS.values()] for job in jobs}.values())
print(f"{len(every_job)} runs, {sum(job.cached for job in every_job)} in the cache; the others train "
      f"{'here' if WORKERS == 1 else f'in {WORKERS} processes'}")
with warnings.catch_warnings(record=True) as caught:  # each run's own warnings are said below, one line per run
    warnings.simplefilter("always")
    every_result = dict(zip([job.key for job in every_job],
                            grid.execute(every_job, "processes" if WORKERS > 1 else "here", workers=WORKERS)))
recorded = {w for r in every_result.values() for w in r.warnings}
for w in caught:
    if str(w.message) not in recorded:
        print(f"note: {w.message}")
results_of = {name: [every_result[job.key] for job in jobs] for name, jobs in {**TABLE_JOBS, **SECTION_JOBS}.items()}

tables, runs, starvation_warnings = {}, {}, []
for model, sparsity in TABLES:
    key = f"{model}@{sparsity}"
    tables[key] = ck.compare(["dense", *UNSTRUCTURED, *STRUCTURED], data=DATA, model=model, sparsity=sparsity,
                             seeds=SEEDS, width=WIDTH, progress=False, **RUN_OPTIONS)  # replayed from the cache
    starvation_warnings += [f"{LABELS[r.method]}, seed {r.seed}: " + w.split(" (layer starvation")[0]
                            for r in results_of[key] for w in r.warnings if "layer starvation" in w]
    for r in results_of[key]:
        for w in r.warnings:
            if "layer starvation" not in w:
                print(f"note ({LABELS[r.method]}, seed {r.seed}): {w}")
    runs[key] = runs_frame(tables[key])
    print(f"\n{DATA} · {model} (width {WIDTH}) · target weight sparsity {sparsity} · seeds {SEEDS} · "
          f"{EPOCHS} epochs after pruning · {runs[key]['device'].iloc[0]}")
    display(tables[key][SHOWN])
if starvation_warnings:
    print(f"{len(starvation_warnings)} run(s) left a layer with at most two nodes (layer starvation; the layouts "
          "below show where):")
    for text in starvation_warnings:
        print("  " + text)


# %% [markdown]
# Each method's cost as a ratio to dense training (mean over seeds), beside its accuracy. The unstructured row is
# the control: its weights are as sparse as the structured rows', but its tensors are dense.

# %%
def ratios(frame):
    mean = frame.groupby("method", sort=False)[["test_acc", "weight_sparsity", "node_sparsity", "flops",
                                                "batch_time_ms", "peak_memory_bytes", "params"]].mean()
    dense = mean.loc["dense"]
    out = mean[["test_acc", "weight_sparsity", "node_sparsity"]].copy()
    out["test_acc_std"] = frame.groupby("method", sort=False)["test_acc"].std().fillna(0.0)
    for column in ("flops", "batch_time_ms", "peak_memory_bytes", "params"):
        out[f"{column}_ratio"] = mean[column] / dense[column]
    out["family"] = [FAMILIES[m] for m in out.index]
    return out

MARKERS = dict(zip(["dense", *UNSTRUCTURED, *STRUCTURED], "*XosD^v<>ph"))
for key, frame in runs.items():
    r = ratios(frame)
    display(r.round(3))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, column, title in zip(axes, ["flops_ratio", "batch_time_ms_ratio", "peak_memory_bytes_ratio"],
                                 ["FLOPs", "batch time (measured)", "peak memory"]):
        for i, (method, row) in enumerate(r.iterrows()):
            ax.errorbar(row[column], 100 * row["test_acc"], yerr=100 * row["test_acc_std"], fmt=MARKERS[method],
                        color="black" if method == "dense" else f"C{i}", ms=8, capsize=3, label=LABELS[method],
                        mfc="white" if FAMILIES[method] == "Unstructured" else None)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel=f"{title} ÷ dense", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%), mean ± std over seeds")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{key}: accuracy against cost ({len(SEEDS)} seed(s); open marker: masks, unstructured)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(ck.paths.output_file(OUTPUT_DIR, f"04_table_{key.replace('@', '_')}.png"), dpi=100)
    plt.show()
    for method in ["crop-u", "crop-s", "earlycrop-s"]:
        row = r.loc[method]
        print(f"{key} {LABELS[method]:>12}: accuracy {row['test_acc']:.1%}, weight sparsity "
              f"{row['weight_sparsity']:.3f}, node sparsity {row['node_sparsity']:.3f}, FLOPs {row['flops_ratio']:.3f}×, "
              f"batch time {row['batch_time_ms_ratio']:.2f}×, peak memory {row['peak_memory_bytes_ratio']:.3f}× dense")
phases.done("table")

# %% [markdown]
# ### Where the budget went: kept channels per layer
#
# A structured prune ranks *all* nodes of the network against each other and keeps the best until the weight
# budget is met. Nothing stops it from leaving a layer with one or two channels — **layer starvation** — and every
# prediction must then pass through that layer. Each structured run records its layout (`Result.layout`:
# kept / dense nodes per layer); below, seed 0 of every structured row. A run that leaves a layer with at most two
# nodes also warns.

# %%
every_run = {m: [r for r in results_of[f"{table_model}@{table_sparsity}"] if r.method == m]
             for m in ["dense", *UNSTRUCTURED, *STRUCTURED]}  # the runs of the table above, by method
layout_runs = {m: every_run[m][0] for m in STRUCTURED}
end_loss = {m: float(np.mean([r.history[-1]["train_loss"] for r in rs])) for m, rs in every_run.items()}
print("training loss at the end (mean over seeds; has the sparse phase converged?): "
      + ", ".join(f"{LABELS[m]} {v:.3f}" for m, v in end_loss.items()))
layouts = pd.DataFrame({LABELS[m]: {layer: f"{kept}/{dense}" for layer, (kept, dense) in r.layout.items()}
                        for m, r in layout_runs.items()})
display(layouts)
least = {m: min(kept / dense for kept, dense in r.layout.values()) for m, r in layout_runs.items()}
starved = {m: v for m, v in least.items() if v <= 0.05}
print("smallest share of a layer kept: " + ", ".join(f"{LABELS[m]} {v:.0%}" for m, v in least.items()))
phases.done("layouts")

# %% [markdown]
# ### Why EarlyCroP-S starves some layers: the scores move with training
#
# CroP-S scores a node by how much the gradient flow depends on it. At initialisation the layers' scores are of
# comparable size; after a few epochs of training they are not. We re-create seed 0's EarlyCroP-S moment:
# `cropkit.lessons.moments.moment` re-runs the table's EarlyCroP-S run and stops at its prune, so $\theta_0$,
# $\theta_t$ and the scoring batches are the run's own. We compare each node layer's mean score at $\theta_0$ and
# at $\theta_t$, divided by the last node layer's: a ratio that grows means the global ranking now prefers the early
# layers, and the last ones are cut thin.

# %%
from cropkit.lessons import moments

the_moment = moments.moment("earlycrop-s", data=DATA, model=table_model, width=WIDTH, sparsity=table_sparsity,
                            seed=SEEDS[0], **RUN_OPTIONS)  # the run of the table, stopped at its prune
theta_0, net, scoring, early_cfg = the_moment.theta_0, the_moment.theta_t, the_moment.batches, the_moment.settings


def mean_scores(model):
    return {layer: float(s.mean()) for layer, s in ck.scores.crop_nodes(model, scoring).items()}


at_init, at_t = mean_scores(theta_0), mean_scores(net)
last = list(at_init)[-1]
score_ratio = pd.DataFrame({"mean score ÷ last layer's, at θ₀": {k: v / at_init[last] for k, v in at_init.items()},
                            "at θ_t": {k: v / at_t[last] for k, v in at_t.items()}})
display(score_ratio.round(2))
first = list(at_init)[0]
print(f"EarlyCroP-S pruned after epoch {the_moment.prune_epoch} (the run: "
      f"{every_run['earlycrop-s'][0].prune_epoch}); first / last node layer ({first} / {last}): "
      f"{score_ratio.iloc[0, 0]:.1f} at θ₀, {score_ratio.iloc[0, 1]:.1f} at θ_t")
phases.done("moment")

# %% [markdown]
# ### A per-layer floor
#
# The paper's rule has no floor. `layer_floor` (a run option, 0 by default) keeps at least that fraction of every
# layer's nodes and ranks the rest globally. The row below changes only that option: if EarlyCroP-S recovers with
# it, the starvation was what cost the accuracy.

# %%
floor_runs = results_of["floor"]  # trained with the table above
plain = runs[f"{table_model}@{table_sparsity}"]
plain_acc = plain[plain.method == "earlycrop-s"].test_acc
floor_acc = pd.Series([r.test_acc for r in floor_runs])
floor_least = min(kept / dense for kept, dense in floor_runs[0].layout.values())
print(f"EarlyCroP-S at {table_sparsity:.0%}: paper rule {plain_acc.mean():.1%} ± {plain_acc.std() if len(plain_acc) > 1 else 0:.1%}; "
      f"floor {LAYER_FLOOR:.0%}: {floor_acc.mean():.1%} ± {floor_acc.std() if len(floor_acc) > 1 else 0:.1%} "
      f"(smallest layer share kept {floor_least:.0%}, seed {SEEDS[0]})")
phases.done("floor")

# %% [markdown]
# ### A learning rate at which the starved layer recovers
#
# The table trains at a peak learning rate of 0.02 (`OPTIONS`). The rows below change only that: EarlyCroP-S, with
# and without the floor, at `SLOW_LR` (the `cpu` profile's default, 2e-3). The detector, the score and the budget are
# the same, but the dense phase trains at the other rate too, so $\theta_t$ and the layout differ: the cell prints
# both. Which row would you have believed if you had trained only at 2e-3?

# %%
slow = {False: results_of["slow"], True: results_of["slow floor"]}  # trained with the table above
table_lr = every_run["earlycrop-s"][0].config["lr"]
for floor, rs in slow.items():
    acc = pd.Series([r.test_acc for r in rs])
    last_kept = list(rs[0].layout.values())[-1]
    print(f"EarlyCroP-S at lr {SLOW_LR:g}{f', floor {LAYER_FLOOR:.0%}' if floor else ', paper rule'}: "
          f"{acc.mean():.1%} ± {acc.std() if len(acc) > 1 else 0:.1%}, training loss at the end "
          f"{np.mean([r.history[-1]['train_loss'] for r in rs]):.3f}; last node layer keeps "
          f"{last_kept[0]}/{last_kept[1]} (seed {SEEDS[0]})")
table_last = list(every_run["earlycrop-s"][0].layout.values())[-1]
table_acc = pd.Series([r.test_acc for r in every_run["earlycrop-s"]])
print(f"EarlyCroP-S at lr {table_lr:g} (the table): {table_acc.mean():.1%} ± "
      f"{table_acc.std() if len(table_acc) > 1 else 0:.1%}, training loss at the end "
      f"{end_loss['earlycrop-s']:.3f}; last node layer keeps {table_last[0]}/{table_last[1]} (seed {SEEDS[0]})")
phases.done("learning rate")

# %% [markdown]
# ## 4 · A pruned wide network against a dense one of equal memory
#
# Structured pruning lets you train a network whose *dense* version would not fit. Here a wide model (width
# `WIDE_WIDTH`) is pruned at initialisation with CroP-S to `WIDE_SPARSITY` and trained; its peak training
# memory sets the budget. Among narrower *dense* models we pick the widest whose peak memory fits that budget and
# train it the same way. Same memory, same epochs: which learns more? (Peak memory is measured as in the table,
# on a batch of the run's batch size.)

# %%
wide_model = TABLES[0][0]
wide = ck.run("crop-s", data=DATA, model=wide_model, width=WIDE_WIDTH, sparsity=WIDE_SPARSITY,
              seed=SEEDS[0], **RUN_OPTIONS)
budget_bytes = wide.peak_memory_bytes

memory_data = ck.data.load(DATA, batch_size=batch_size, seed=SEEDS[0], limit=run_cfg.limit)
xb, yb = next(iter(memory_data.train))
def dense_memory(width):
    model = ck.models.build(wide_model, memory_data.input_shape, memory_data.num_classes, width=width, seed=0)
    return ck.measure.peak_memory(model.to(ck.train.default_device()), xb, yb)["bytes"]

candidates = {w: dense_memory(w) for w in NARROW_WIDTHS}
wide_dense_bytes = dense_memory(WIDE_WIDTH)
fitting = [w for w, b in candidates.items() if b <= budget_bytes]
narrow_width = max(fitting) if fitting else min(candidates)
if not fitting:
    print(f"no dense width in {NARROW_WIDTHS} fits {budget_bytes / 1e6:.2f} MB; using the narrowest")
narrow = ck.run("dense", data=DATA, model=wide_model, width=narrow_width, seed=SEEDS[0], **RUN_OPTIONS)

print(f"dense widths and their peak memory: " + ", ".join(f"{w}: {b / 1e6:.2f} MB" for w, b in candidates.items()))
wide_vs_narrow = pd.DataFrame([
    {"model": f"{wide_model} ×{WIDE_WIDTH}, dense (not trained)", "peak_memory_MB": wide_dense_bytes / 1e6,
     "params": None, "test_acc": None},
    {"model": f"{wide_model} ×{WIDE_WIDTH}, CroP-S {WIDE_SPARSITY:.0%}", "peak_memory_MB": budget_bytes / 1e6,
     "params": wide.params, "test_acc": wide.test_acc},
    {"model": f"{wide_model} ×{narrow_width}, dense", "peak_memory_MB": narrow.peak_memory_bytes / 1e6,
     "params": narrow.params, "test_acc": narrow.test_acc},
]).set_index("model")
display(wide_vs_narrow)
print(f"the wide dense model would need {wide_dense_bytes / budget_bytes:.1f}× the memory of its pruned version")
print(f"at equal memory budget: pruned wide {wide.test_acc:.1%} vs dense narrow {narrow.test_acc:.1%} test accuracy "
      f"({wide.params:,} vs {narrow.params:,} parameters)")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
ax1.barh(wide_vs_narrow.index, wide_vs_narrow["peak_memory_MB"], color=["#bbbbbb", "tab:blue", "tab:orange"])
ax1.axvline(budget_bytes / 1e6, color="k", ls="--", lw=0.8)
ax1.set(xlabel="peak memory of a training step (MB)", title="memory")
trained = wide_vs_narrow.dropna(subset=["test_acc"])
ax2.barh(trained.index, trained["test_acc"], color=["tab:blue", "tab:orange"])
ax2.set(xlabel="test accuracy", xlim=(0, 1.15), title="accuracy at equal memory")
for ax, values, fmt in ((ax1, wide_vs_narrow["peak_memory_MB"], "{:.2f} MB"), (ax2, trained["test_acc"], "{:.1%}")):
    for i, value in enumerate(values):
        ax.text(value, i, " " + fmt.format(value), va="center", fontsize=8)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "04_wide_vs_narrow.png"), dpi=100)
plt.show()
phases.done("wide vs narrow")


# %% [markdown]
# ## What to notice
#
# Written by the next cell from this run's numbers (they change with the profile, the seeds and your settings).

# %%
def ms(values):
    values = pd.Series(list(values))
    return f"{values.mean():.1%}" + (f" ± {values.std():.1%}" if len(values) > 1 else "")


key = f"{table_model}@{table_sparsity}"
r, frame = ratios(runs[key]), runs[key]
acc_of = {m: frame[frame.method == m].test_acc for m in r.index}
near = [m for m in STRUCTURED if acc_of["dense"].mean() - acc_of[m].mean()
        <= (acc_of["dense"].std() ** 2 + acc_of[m].std() ** 2) ** 0.5 if len(SEEDS) > 1]
best = max(STRUCTURED, key=lambda m: acc_of[m].mean())
sweep_95 = sweep[sweep.target_sparsity == max(SWEEP)]
notice = [
    f"**Structured pruning shrinks the network.** In the sweep at {max(SWEEP):.0%}, "
    + "; ".join(f"{row.model}: FLOPs {row.flops_ratio:.3f}×, batch time {row.batch_time_ratio:.2f}×, peak memory "
                f"{row.peak_memory_ratio:.2f}× dense" for row in sweep_95.itertuples())
    + ". Batch time falls far less than FLOPs: fixed per-layer overheads (kernel launches, the optimizer's loop "
    "over tensors) do not shrink, and a single measured ratio is noisy on a busy machine.",
    f"**Masks do not.** CroP-U reaches weight sparsity {r.loc['crop-u', 'weight_sparsity']:.3f} with FLOPs "
    f"{r.loc['crop-u', 'flops_ratio']:.3f}×, peak memory {r.loc['crop-u', 'peak_memory_bytes_ratio']:.2f}× and batch "
    f"time {r.loc['crop-u', 'batch_time_ms_ratio']:.2f}× dense: its tensors stay dense.",
    f"**Accuracy at {table_sparsity:.0%}** ({DATA}, {table_model} ×{WIDTH}, {EPOCHS} epochs after pruning, "
    f"{len(SEEDS)} seed(s)): dense {ms(acc_of['dense'])}; best structured {LABELS[best]} {ms(acc_of[best])}; "
    f"EarlyCroP-S {ms(acc_of['earlycrop-s'])}; Random-S {ms(acc_of['random-s'])}. "
    + (f"Within one seed spread of dense: {', '.join(LABELS[m] for m in near)}." if near else
       ("No structured row is within one seed spread of dense." if len(SEEDS) > 1 else
        "With one seed there is no spread to read these gaps against.")),
    f"**Layer starvation.** The smallest share of a layer kept (seed {SEEDS[0]}): "
    + ", ".join(f"{LABELS[m]} {v:.0%}" for m, v in least.items()) + ". "
    + (f"{', '.join(LABELS[m] for m in starved)} cut a layer to 5 % or less. " if starved else "")
    + f"At θ_t the first node layer's mean CroP score is {score_ratio.iloc[0, 1]:.1f}× the last one's, against "
    f"{score_ratio.iloc[0, 0]:.1f}× at θ₀ (detector after epoch {the_moment.prune_epoch}).",
    f"**EarlyCroP-S's detector** ({early_cfg.rule} rule, τ = "
    f"{'its default' if early_cfg.threshold is None else early_cfg.threshold}): pruned after epoch(s) "
    f"{sorted(r.prune_epoch for r in every_run['earlycrop-s'])}; "
    f"{sum(not r.forced for r in every_run['earlycrop-s'])} of {len(SEEDS)} fired, "
    f"{sum(bool(r.forced) for r in every_run['earlycrop-s'])} forced at the cap of {early_cfg.max_dense_epochs}.",
    f"**Has training converged?** Training loss at the end: dense {end_loss['dense']:.3f}; "
    + ", ".join(f"{LABELS[m]} {end_loss[m]:.3f}" for m in STRUCTURED)
    + f". Rows far above dense's are still learning after {EPOCHS} epochs: their accuracy is a lower bound.",
    f"**The floor, at the table's learning rate** ({table_lr:g}): EarlyCroP-S with a {LAYER_FLOOR:.0%} floor "
    f"{ms(floor_acc)} against {ms(plain_acc)} with the paper's rule (only that option differs).",
    f"**The learning rate** (section 3, only it differs): at {SLOW_LR:g} EarlyCroP-S reaches "
    f"{ms([r.test_acc for r in slow[False]])} (training loss at the end "
    f"{np.mean([r.history[-1]['train_loss'] for r in slow[False]]):.3f}) and {ms([r.test_acc for r in slow[True]])} "
    f"with the floor; at {table_lr:g} {ms(acc_of['earlycrop-s'])}. A starved layer costs accuracy where training "
    "is too slow to recover from the cut, and less where it is not.",
    f"**At equal memory** (section 4): the pruned wide network {wide.test_acc:.1%} against the dense narrow one "
    f"{narrow.test_acc:.1%} (one seed: {'the wide one ahead' if wide.test_acc > narrow.test_acc else 'the narrow one ahead or level'}, "
    "anecdotal without a spread).",
]
notice_text = ck.notebook.show_markdown(notice)

# %% [markdown]
# What is known and what is not. Node scores that move with training are measured above; the floor row changes
# only the floor. Why the paper's CIFAR runs of EarlyCroP-S did not starve is *not* known here: they were made on
# CIFAR-10 at full width with 80 epochs after pruning, which this kit has not run (no GPU, no CIFAR offline); the
# `paper` profile is ready for them. Other points:
#
# * Node sparsity is below weight sparsity: removing a channel also removes the matching inputs of the next
#   layer, so fewer nodes have to go to reach a weight target.
# * EarlyCroP-S, EarlyBird, GateDecorators and EfficientConvNets pay for a dense phase first (see the epochs and
#   prune-epoch columns and the training time); the at-init methods are cheapest to train.
#
# ## Try this
# * In the explorer, set the budget to `flops` and compare the kept channels with the `weights` budget at the
#   same value: which layers lose more?
# * `EXPLORER_WIDTH = 0.5`: does the batch-time ratio get closer to the FLOP ratio as the network grows?
# * `SEEDS = [0]` trains the table with one seed: a third of the time, and no ± std to read the gaps against.
# * `TABLES = [["resnet18", 0.9]]` and `WIDTH = 0.25` trains the table on ResNet18 (slower on a CPU).

# %%
def rows_of(frame):
    keep = ["method", "seed", "target_sparsity", "weight_sparsity", "node_sparsity", "params", "flops", "nonzero_macs",
            "test_acc", "best_test_acc", "epochs_trained", "prune_epoch", "train_seconds", "batch_time_ms",
            "peak_memory_bytes", "peak_memory_method", "disk_bytes", "emissions_g", "device", "threads"]
    return frame[keep].to_dict(orient="records")

explorer_state = {k: v for k, v in explorer.last.items()}
results = {
    "phase_seconds": phases.seconds,
    "profile": PROFILE, "data": DATA, "width": WIDTH, "epochs": EPOCHS, "seeds": SEEDS,
    "run_options": OPTIONS, "threads": THREADS, "workers": WORKERS,
    "hardware": ck.hardware.describe(),
    "families": {m: FAMILIES[m] for m in ["dense", *UNSTRUCTURED, *STRUCTURED]},
    "tables": [{"model": model, "sparsity": sparsity, "rows": rows_of(runs[f"{model}@{sparsity}"])}
               for model, sparsity in TABLES],
    "explorer": explorer_state,
    "sweep": sweep.to_dict(orient="records"),
    "wide_vs_narrow": {"model": wide_model, "wide_width": WIDE_WIDTH, "sparsity": WIDE_SPARSITY,
                       "narrow_width": narrow_width, "budget_bytes": budget_bytes,
                       "wide_dense_bytes": wide_dense_bytes, "candidate_bytes": candidates,
                       "wide": {k: wide.row()[k] for k in ("test_acc", "params", "peak_memory_bytes", "weight_sparsity",
                                                           "node_sparsity", "batch_time_ms")},
                       "narrow": {k: narrow.row()[k] for k in ("test_acc", "params", "peak_memory_bytes",
                                                               "batch_time_ms")}},
    "layouts": {m: r.layout for m, r in layout_runs.items()}, "train_loss_end": end_loss,
    "score_ratio": {"fired_epoch": the_moment.prune_epoch, "layers": score_ratio.rename_axis("layer").reset_index()
                    .to_dict(orient="records")},
    "layer_floor": {"floor": LAYER_FLOOR, "test_acc": list(floor_acc), "paper_rule_test_acc": list(plain_acc)},
    "slow_lr": {"lr": SLOW_LR, "table_lr": table_lr, "lrs": sorted({r.config["lr"] for rs in slow.values() for r in rs}),
                "test_acc": [r.test_acc for r in slow[False]], "floor_test_acc": [r.test_acc for r in slow[True]],
                "train_loss_end": [r.history[-1]["train_loss"] for r in slow[False]],
                "threads": sorted({r.threads for rs in [*slow.values(), floor_runs] for r in rs})},
    "notice": notice_text,
    "widget_errors": [repr(e) for e in explorer.errors],
}
print("wrote", ck.notebook.save_results(OUTPUT_DIR, "04_structured_pruning", results))
ck.widgets.raise_recorded(explorer.errors)  # a callback that failed while you used the explorer fails the run
