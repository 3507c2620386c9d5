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
# # 03 · Lottery tickets against EarlyCroP: what rewinding buys, and what it costs
#
# **Learning goal.** Compare the *lottery ticket* recipe — train, prune by magnitude, **rewind** the survivors to
# their early weights, retrain, and repeat — with pruning once, early and cheaply: at initialisation (Random-U, SNIP,
# GraSP, CroP-U) or when training turns lazy (EarlyCroP-U). Separate EarlyCroP's two choices — *when* it prunes (the
# detector of lesson 02) and *how* (CroP's score) — by pruning at the detector's epoch with magnitude instead. Read
# two plots side by side: accuracy over sparsity, and accuracy over what it cost to get there.
#
# **The idea.** Frankle & Carbin found that a dense network contains sparse *winning tickets*: subnetworks that,
# trained from the original weights, match the dense accuracy. Finding one takes *iterative magnitude pruning*
# (LTR here): train for $E$ epochs, remove a fraction $1-(1-p)^{1/R}$ of the surviving weights by $|\theta|$, reset the
# survivors to $\theta_k$ (the weights after $k$ early epochs — *rewinding*), retrain, and repeat $R$ rounds until the
# sparsity $p$ is reached. That is $R+1$ full trainings. The **control** re-initialises the survivors at random instead
# of rewinding them: if the ticket's value lay only in the mask, the control would do as well.
#
# EarlyCroP asks for one training: dense for a few epochs until the detector of lesson 02 fires, one CroP prune,
# then the sparse phase of $E$ epochs from where it stands (no rewinding). Under the `cpu` profile the data, model and
# detector are lesson 02's setting (`mnist1d`, `cnn` ×0.5, the reference rule at $\tau = 0.7$), in which the detector
# fires while the network is still learning — EarlyCroP's premise. At-init methods prune before the first step
# and train $E$ epochs. Every method here is *unstructured* (masks), so its sparse phase costs as much per epoch as
# dense training; the bill is counted in epochs and in wall time.
#
# **A verdict needs converged runs.** Every run trains $E = 20$ epochs after its prune at a peak learning rate of
# 0.02 (`LR`; Adam with a one-cycle schedule), so that the pruned networks end near dense's training loss (section 4
# prints it). At the `cpu` profile's default of 2e-3 the same pruned networks were still learning after 80 epochs,
# and the order of *when* flipped with $E$ — the last item of *Try this* shows it.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop), and cropkit.run takes its other defaults from it; the harness (--profile smoke or paper) applies 03_lottery_vs_earlycrop.profiles.json on top
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DATA = "mnist1d"  # type: str  dataset name; with the model, the width and the detector below: lesson 02 setting, where EarlyCroP premise holds
MODEL = "cnn"  # type: str  model name
WIDTH = 0.5  # type: float  width multiplier
EPOCHS = 20  # type: int  epochs E of the sparse phase, and of each LTR training (20: the pruned rows train to a loss near dense at 90 percent, section 4)
BATCH_SIZE = 128  # type: int  training batch size of every run
LR = 0.02  # type: float|None  peak learning rate of every run (Adam, one-cycle schedule); None takes the profile default 2e-3, under which the pruned nets of this setting need about 80 epochs to converge (section 4)
LIMIT = None  # type: int|None  training samples kept, the first ones; None keeps them all
SCORE_BATCHES = 4  # type: int  training batches the pruning scores see
MAX_DENSE_EPOCHS = 10  # type: int  longest dense phase of EarlyCroP before the prune is forced
RULE = "reference"  # type: str  rule of the EarlyCroP detector, seed or reference (lesson 02)
THRESHOLD = 0.7  # type: float|None  threshold tau of the detector rule; None takes the rule default
MEASURE_EMISSIONS = False  # type: bool  estimate each run with codecarbon
SPARSITIES = [0.8, 0.9, 0.95]  # type: list  target weight sparsities of the sweep
SEEDS = [0, 1, 2]  # type: list  seeds of every configuration
LTR_ROUNDS = 3  # type: int  prune-rewind-retrain rounds R of LTR
REWIND_EPOCH = 1  # type: int  epoch k whose weights LTR rewinds to, 0 means initialisation
FOCUS_SPARSITY = 0.9  # type: float  sparsity of the cost plot and of the table, one of the SPARSITIES
METHODS = ["ltr", "ltr-reinit", "earlycrop-u", "earlycrop-u-magnitude", "crop-u", "snip", "random-u"]  # type: list  contestants; dense runs as the reference
THREADS = 1  # type: int|None  torch CPU threads (these small nets train several times faster on one than on two busy cores); None lets torch choose
WORKERS = 2  # type: int  runs at once, each in its own process with THREADS threads (2 cores: two runs side by side)
CACHE = True  # type: bool  replay runs stored in outputs/cache; False trains everything again

# %%
import copy
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import cropkit as ck
from cropkit.experiments import grid, lottery
from cropkit.lessons import moments
from cropkit.methods.registry import FAMILIES, LABELS, REGISTRY, entry_of

phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
if THREADS:
    torch.set_num_threads(THREADS)
if FOCUS_SPARSITY not in SPARSITIES:
    raise ValueError(f"FOCUS_SPARSITY={FOCUS_SPARSITY} must be one of the SPARSITIES {SPARSITIES}")
# Every run gets the same settings; each method reads the ones it needs (cropkit.run documents them all).
RUN_OPTIONS = dict(profile=PROFILE, data=DATA, model=MODEL, width=WIDTH, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR,
                   limit=LIMIT, score_batches=SCORE_BATCHES, max_dense_epochs=MAX_DENSE_EPOCHS, rule=RULE,
                   threshold=THRESHOLD, ltr_rounds=LTR_ROUNDS, rewind_epoch=REWIND_EPOCH,
                   measure_emissions=MEASURE_EMISSIONS, cache=CACHE, threads=THREADS)
HARDWARE = ck.hardware.describe()
print("measured on:", HARDWARE)
STEM = "03_lottery_vs_earlycrop"
JOBS = grid.plan(["dense"] + METHODS, SPARSITIES, SEEDS, progress=False, **RUN_OPTIONS)  # validated now
phases.done("setup")

# %% [markdown]
# ## 1 · The bill before the race
#
# What each contestant must train, in epochs, with $E$ (`EPOCHS`), $R$ (`LTR_ROUNDS`) and EarlyCroP's
# cap on the dense phase (`max_dense_epochs`). The EarlyCroP detector decides its own dense phase $t$; the table
# shows the range it can take.

# %%
E, R = EPOCHS, LTR_ROUNDS
for job in JOBS:  # each method's facts (`cropkit methods`): the most epochs it trains with these settings
    if job.seed == SEEDS[0] and job.sparsity in (0.0, FOCUS_SPARSITY):
        spec = REGISTRY[job.method]
        print(f"{LABELS[job.entry]:>30}  prunes {spec.when:<15} {spec.schedule:<75} trains at most {job.epochs} epochs")
print(f"LTR rewinds to the weights after epoch {REWIND_EPOCH}; round r prunes to the sparsity 1 - (1 - p)^(r/{R})")
print(f"EarlyCroP's detector: {RULE} rule, tau = {THRESHOLD}, at most {MAX_DENSE_EPOCHS} dense epochs")
phases.done("bill")

# %% [markdown]
# ## 2 · The sweep
#
# Every contestant at every target sparsity and seed, plus dense training once per seed. `cropkit.run` stores each
# run in a cache keyed by its complete configuration and the code's version, so re-running this notebook replays the
# runs instead of training again (set `CACHE = False` to retrain).

# %%
start = time.perf_counter()
if WORKERS == 1 and not all(job.cached for job in JOBS):
    lottery.warm_up(**RUN_OPTIONS)  # one untimed dense epoch: the first timed run pays no start-up costs
with warnings.catch_warnings(record=True) as caught:  # each run's warnings are said below, one line per run
    warnings.simplefilter("always")
    results = grid.execute(JOBS, "processes" if WORKERS > 1 else "here", workers=WORKERS)
recorded = {w for r in results for w in r.warnings}
for w in caught:
    if str(w.message) not in recorded:
        print(f"warning during the sweep: {w.message}")
sweep_seconds = time.perf_counter() - start
runs = lottery.frame(JOBS, results)
replayed = sum(r.from_cache for r in results)
print(f"{len(results)} runs ({replayed} replayed from the cache) in {sweep_seconds:.0f} s on {HARDWARE}")
for r in results:
    for w in r.warnings:
        print(f"warning in {entry_of(r.method, r.config)} at sparsity {r.target_sparsity}, seed {r.seed}: {w}")
phases.done("sweep")

# %% [markdown]
# Two checks before reading any accuracy: did every run reach its target sparsity, and did each method train
# for as many epochs as its bill says?

# %%
pruned = runs[runs.method != "dense"]
deviation = (pruned.weight_sparsity - pruned.target_sparsity).abs()
print(f"largest gap between achieved and target weight sparsity: {deviation.max():.3%} (allowed: 1 %)")
epochs_by_method = runs.groupby("label", sort=False).epochs_trained.agg(["min", "max"])
display(epochs_by_method.rename(columns={"min": "fewest epochs", "max": "most epochs"}))
phases.done("checks")

# %% [markdown]
# ## 3 · Accuracy over sparsity
#
# Mean test accuracy over the seeds with one standard deviation as error bars (none with a single seed). The
# horizontal axis spaces sparsities by $\log(1/\text{density})$ so that 95 % → 98 % gets as much room as it deserves:
# each step there halves or more than halves what is left.

# %%
STYLE = {"ltr": ("C3", "o", "-"), "ltr-reinit": ("C3", "o", ":"), "earlycrop-u": ("C0", "s", "-"),
         "earlycrop-u-magnitude": ("C9", "s", "--"),
         "crop-u": ("C2", "^", "-"), "cropit-u": ("C2", "v", "--"), "snip": ("C1", "D", "-"),
         "grasp": ("C4", "P", "-"), "random-u": ("C7", "x", "--")}
FACE = {"ltr-reinit": "white"}  # the control: open markers


def position(sparsity):
    return -np.log10(1 - np.asarray(sparsity, dtype=float))


accuracy = lottery.mean_std(pruned, "test_acc")
dense_runs = runs[runs.method == "dense"]
dense_mean, dense_std = dense_runs.test_acc.mean(), dense_runs.test_acc.std() if len(dense_runs) > 1 else 0.0
fig, ax = plt.subplots(figsize=(9, 5.2))
ax.axhspan(100 * (dense_mean - dense_std), 100 * (dense_mean + dense_std), color="0.85", zorder=0)
ax.axhline(100 * dense_mean, color="0.4", lw=1, label=f"Dense ({100 * dense_mean:.1f} %)")
for method, group in accuracy.groupby("method", sort=False):
    color, marker, line = STYLE.get(method, ("k", ".", "-"))
    ax.errorbar(position(group.target_sparsity), 100 * group["mean"], yerr=100 * group["std"], color=color,
                marker=marker, ls=line, capsize=3, label=LABELS[method], mfc=FACE.get(method, color))
ax.set_xticks(position(SPARSITIES), [f"{s:.0%}" for s in SPARSITIES])
ax.set(xlabel="target weight sparsity (spaced by log of 1/density)", ylabel="test accuracy (%)",
       title=f"Accuracy over sparsity · {DATA} / {MODEL} · mean ± std over {len(SEEDS)} seed(s)")
ax.grid(alpha=0.3)
ax.legend(ncol=2, fontsize=9, loc="lower left")
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, f"{STEM}_accuracy.png"), dpi=110)
plt.show()

table_acc = accuracy.assign(cell=[f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(accuracy["mean"], accuracy["std"])])
display(table_acc.pivot(index="method", columns="target_sparsity", values="cell").rename(index=LABELS)
        .loc[[LABELS[m] for m in METHODS]])
best = accuracy.loc[accuracy.groupby("target_sparsity", sort=False)["mean"].idxmax()]
for _, row in best.iterrows():
    print(f"best at {row.target_sparsity:.0%} sparsity: {LABELS[row.method]} with {row['mean']:.1%}")
phases.done("accuracy plot")

# %% [markdown]
# ## 4 · When or how?
#
# EarlyCroP changes two things at once against CroP-U: it prunes **later** (when the detector fires, on the trained
# weights $\theta_t$) and it prunes **with CroP**. To see which of the two helps, the sweep also ran the same
# detector with a different score: *EarlyCroP timing, magnitude* prunes $\theta_t$ by $|\theta|$ at the very epoch
# EarlyCroP would have pruned by CroP. At the focus sparsity:
#
# * CroP at initialisation (CroP-U) against CroP at $\theta_t$ (EarlyCroP-U): what waiting buys, same score;
# * CroP at $\theta_t$ against magnitude at $\theta_t$: what the score buys, same moment.
#
# The firing epoch is `prune_epoch`; the train accuracy is the firing epoch's own (a running mean over its batches in
# train mode, as the training loop records it), against the dense runs' last epoch.

# %%
WHEN_HOW = [m for m in ("crop-u", "earlycrop-u", "earlycrop-u-magnitude", "random-u") if m in METHODS]
WHEN = {"crop-u": "at initialisation", "random-u": "at initialisation", "earlycrop-u": "when the detector fires",
        "earlycrop-u-magnitude": "when the detector fires"}
HOW = {"crop-u": "CroP", "random-u": "random", "earlycrop-u": "CroP", "earlycrop-u-magnitude": "magnitude |θ|"}


def firing_record(result):
    """The training loop's record of the epoch after which ``result`` pruned (None: pruned at initialisation)."""
    return next(e for e in result.history if e["epoch"] == result.prune_epoch) if result.prune_epoch else None


dense_final_train_acc = np.mean([r.history[-1]["train_acc"] for r in results if r.method == "dense"])
when_how_rows = []
for m in WHEN_HOW:
    mine = [r for r in results if entry_of(r.method, r.config) == m and r.target_sparsity == FOCUS_SPARSITY]
    fired_at = [firing_record(r) for r in mine]
    when_how_rows.append({
        "method": LABELS[m], "when": WHEN[m], "score": HOW[m],
        "prune epoch (mean)": np.mean([r.prune_epoch for r in mine]),
        "prune epochs": ", ".join(str(r.prune_epoch) for r in mine),
        "train acc at the prune": np.mean([e["train_acc"] for e in fired_at]) if all(fired_at) else None,
        "test acc": np.mean([r.test_acc for r in mine]), "test acc std": np.std([r.test_acc for r in mine], ddof=1)
        if len(mine) > 1 else 0.0,
        "forced at the cap": sum(bool(r.forced) for r in mine),
    })
when_how = pd.DataFrame(when_how_rows).set_index("method")
print(f"{DATA} / {MODEL} x{WIDTH}, target sparsity {FOCUS_SPARSITY:.0%}, {len(SEEDS)} seed(s); "
      f"dense: test accuracy {dense_mean:.1%}, train accuracy in its last epoch {dense_final_train_acc:.1%}")
display(when_how.round(3))
acc = when_how["test acc"]
if {"crop-u", "earlycrop-u"} <= set(WHEN_HOW):
    print(f"when (same score, CroP): at the detector's epoch {acc[LABELS['earlycrop-u']]:.1%} vs at initialisation "
          f"{acc[LABELS['crop-u']]:.1%}: {100 * (acc[LABELS['earlycrop-u']] - acc[LABELS['crop-u']]):+.1f} points")
if {"earlycrop-u", "earlycrop-u-magnitude"} <= set(WHEN_HOW):
    print(f"how (same moment): magnitude {acc[LABELS['earlycrop-u-magnitude']]:.1%} vs CroP "
          f"{acc[LABELS['earlycrop-u']]:.1%}: "
          f"{100 * (acc[LABELS['earlycrop-u-magnitude']] - acc[LABELS['earlycrop-u']]):+.1f} points for magnitude")
phases.done("when or how")

# %% [markdown]
# Where do the two scores put the surviving weights? The runs above keep their results, not the networks they
# scored, so `cropkit.lessons.moments.moment` re-runs EarlyCroP-U's own code for seed 0 with the sweep's settings
# and stops at its prune: $\theta_0$, the weights $\theta_t$ it scored and its scoring batches are the run's own (the
# same data, initialisation, optimizer and detector; on one thread bit for bit). We score $\theta_t$ with CroP, SNIP
# and magnitude (and $\theta_0$ with CroP) on those batches and prune copies to the focus sparsity. The table gives
# each layer's share of all prunable weights and the fraction of it each score keeps.

# %%
seed = SEEDS[0]
early_run = next(r for r in results if r.method == "earlycrop-u" and r.seed == seed
                 and r.target_sparsity == FOCUS_SPARSITY)
the_moment = moments.moment("earlycrop-u", sparsity=FOCUS_SPARSITY, seed=seed, **RUN_OPTIONS)
net, theta_0, scoring = the_moment.theta_t, the_moment.theta_0, the_moment.batches
print(f"re-created: EarlyCroP-U pruned after epoch {the_moment.prune_epoch}"
      f"{' (forced at the cap)' if the_moment.forced else ''}; the run of seed {seed} pruned after epoch "
      f"{early_run.prune_epoch}")


def kept_per_layer(model, criterion):
    """Fraction of each prunable layer's weights kept when ``model`` is pruned by ``criterion`` to the focus sparsity."""
    with warnings.catch_warnings(record=True) as caught:  # a layer that would be emptied: said as a sentence
        warnings.simplefilter("always")
        pruned_copy = ck.prune.unstructured(copy.deepcopy(model), ck.scores.WEIGHT_SCORES[criterion](
            model, scoring, seed=seed), FOCUS_SPARSITY)
    for w in caught:
        print(f"{criterion} at the focus sparsity: {w.message}")
    return {name: mask.float().mean().item() for name, mask in ck.prune.masks(pruned_copy).items()}


kept = {"CroP at θ₀": kept_per_layer(theta_0, "crop"), "CroP at θ_t": kept_per_layer(net, "crop"),
        "SNIP at θ_t": kept_per_layer(net, "snip"), "magnitude at θ_t": kept_per_layer(net, "magnitude")}
sizes = {name: mask.numel() for name, mask in ck.prune.masks(net).items()}
layers = pd.DataFrame(kept).assign(weights=pd.Series(sizes))
layers.insert(0, "share of all weights", layers.weights / layers.weights.sum())
modules = dict(net.named_modules())
layers.insert(0, "layer", [f"{type(modules[n.rsplit('.', 1)[0]]).__name__} {tuple(modules[n.rsplit('.', 1)[0]].weight.shape)}"
                           for n in layers.index])
display(layers.drop(columns="weights").round(4))
big = layers["share of all weights"].idxmax()
print(f"the largest layer, {big} ({layers.loc[big, 'layer']}), holds {layers.loc[big, 'share of all weights']:.0%} of the prunable weights; at "
      f"{FOCUS_SPARSITY:.0%} sparsity it keeps " + ", ".join(f"{layers.loc[big, c]:.1%} ({c})" for c in kept))
phases.done("kept per layer")

# %% [markdown]
# **What to notice.** The sentences below are written by the next cell from the runs above, so they always say what
# this run measured (under another profile, other seeds or your own settings they change with it).

# %%
def pct(x):
    return f"{100 * x:.1f} %"


def compare(a, b):
    """'+x.x points (spread y.y: verdict)' for entries a and b at the focus sparsity."""
    g = lottery.gap(accuracy, a, b).set_index("target_sparsity").loc[FOCUS_SPARSITY]
    if len(SEEDS) < 2:
        return f"{100 * g.difference:+.1f} points (one seed: no spread to read it against)"
    verdict = "within the seed spread: undecided" if g.verdict.startswith("tie") else "beyond the seed spread"
    return f"{100 * g.difference:+.1f} points ({verdict}, spread {100 * g.spread:.1f})"


notice = []
early = [r for r in results if entry_of(r.method, r.config) == "earlycrop-u" and r.target_sparsity == FOCUS_SPARSITY]
epochs = sorted(r.prune_epoch for r in early)
n_forced = sum(bool(r.forced) for r in early)
fire_train = when_how.loc[LABELS["earlycrop-u"], "train acc at the prune"]
notice.append(
    f"**The detector** ({RULE} rule, τ = {THRESHOLD}) pruned after epoch(s) {', '.join(map(str, epochs))} at "
    f"{FOCUS_SPARSITY:.0%}; {len(early) - n_forced} of {len(early)} runs fired, {n_forced} were forced at the cap of "
    f"{MAX_DENSE_EPOCHS} dense epochs. The firing epoch's training accuracy was "
    + (f"{pct(fire_train)}, against {pct(dense_final_train_acc)} in dense's last epoch"
       if fire_train is not None and fire_train == fire_train else "not recorded")
    + (": the network was still learning, EarlyCroP's premise." if fire_train is not None and
       fire_train < dense_final_train_acc else "."))
if {"crop-u", "earlycrop-u"} <= set(METHODS):
    notice.append(f"***When*, same score:** CroP at θ_t (EarlyCroP-U) {pct(acc[LABELS['earlycrop-u']])} against CroP "
                  f"at initialisation {pct(acc[LABELS['crop-u']])}: {compare('earlycrop-u', 'crop-u')}.")
if "earlycrop-u-magnitude" in METHODS:
    notice.append(f"***How*, same moment:** magnitude at θ_t {pct(acc[LABELS['earlycrop-u-magnitude']])} against CroP "
                  f"at θ_t: {compare('earlycrop-u-magnitude', 'earlycrop-u')} for magnitude.")
if "ltr" in METHODS:
    ltr_acc = accuracy.set_index(["method", "target_sparsity"]).loc[("ltr", FOCUS_SPARSITY), "mean"]
    notice.append(f"**LTR** reaches {pct(ltr_acc)} at {FOCUS_SPARSITY:.0%} for "
                  f"{runs[(runs.method == 'ltr') & (runs.target_sparsity == FOCUS_SPARSITY)].epochs_trained.mean():.0f}"
                  f" epochs; EarlyCroP-U trained {np.mean([r.epochs_trained for r in early]):.1f}.")
loss_end = {m: np.mean([r.history[-1]["train_loss"] for r in results if entry_of(r.method, r.config) == m
                        and (m == "dense" or r.target_sparsity == FOCUS_SPARSITY)]) for m in ["dense", *METHODS]}
notice.append(f"**Has training converged?** Training loss at the end, at {FOCUS_SPARSITY:.0%}: dense "
              f"{loss_end['dense']:.3f}; " + ", ".join(f"{LABELS[m]} {loss_end[m]:.3f}" for m in METHODS)
              + f". With {E} epochs after pruning, rows far above dense's are still learning: their accuracy is a "
              "lower bound, and a gap between them may close with more epochs (`EPOCHS`).")
share = layers.loc[big, "share of all weights"]
notice.append(
    f"**Where the scores put the survivors:** the largest layer, `{big}` ({layers.loc[big, 'layer']}), holds "
    f"{share:.0%} of the prunable weights; at {FOCUS_SPARSITY:.0%} it keeps "
    + ", ".join(f"{layers.loc[big, c]:.1%} ({c})" for c in kept)
    + (". A score that keeps far less than the average of this layer makes it a bottleneck every prediction has to "
       "pass through." if min(layers.loc[big, c] for c in kept) < 0.5 * (1 - FOCUS_SPARSITY) else "."))
notice_text = ck.notebook.show_markdown(notice)

# %% [markdown]
# ## 5 · LTR round by round
#
# Each LTR run trains $R+1$ times. Round 0 is the ordinary dense training (identical for rewinding and its
# control: same seed, same data order); round $r$ trains at the cumulative sparsity $1-(1-p)^{r/R}$. Left: the
# rewound tickets for every target. Right: rewinding against the random-reinit control at the focus sparsity.

# %%
per_round = lottery.rounds(results)
round_acc = (per_round.groupby(["method", "target_sparsity", "round"], sort=False)
             .agg(sparsity=("round_sparsity", "first"), mean=("test_acc", "mean"), std=("test_acc", "std"))
             .fillna({"std": 0.0}).reset_index())
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
colors = plt.cm.viridis(np.linspace(0, 0.9, len(SPARSITIES)))
for color, target in zip(colors, SPARSITIES):
    g = round_acc[(round_acc.method == "ltr") & (round_acc.target_sparsity == target)]
    left.errorbar(g["round"], 100 * g["mean"], yerr=100 * g["std"], color=color, marker="o", capsize=3,
                  label=f"target {target:.0%}")
left.set(xlabel="round (0 = dense training before any pruning)", ylabel="test accuracy after the round (%)",
         title="LTR with rewinding: accuracy after each round", xticks=range(LTR_ROUNDS + 1))
left.legend(fontsize=9)
left.grid(alpha=0.3)
for method in ("ltr", "ltr-reinit"):
    g = round_acc[(round_acc.method == method) & (round_acc.target_sparsity == FOCUS_SPARSITY)]
    color, marker, line = STYLE[method]
    right.errorbar(g["round"], 100 * g["mean"], yerr=100 * g["std"], color=color, marker=marker, ls=line,
                   capsize=3, label=LABELS[method], mfc=FACE.get(method, color))
    for _, row in g.iterrows() if method == "ltr" else ():  # both lines train at the same sparsities
        right.annotate(f"{row.sparsity:.0%}", (row["round"], 100 * row["mean"]), textcoords="offset points",
                       xytext=(0, 8), ha="center", fontsize=8, color="0.3")
right.set(xlabel="round (labels: sparsity trained at)", ylabel="test accuracy after the round (%)",
          title=f"Rewinding vs random reinit, target {FOCUS_SPARSITY:.0%}", xticks=range(LTR_ROUNDS + 1))
right.legend(fontsize=9)
right.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, f"{STEM}_ltr_rounds.png"), dpi=110)
plt.show()

focus_rounds = round_acc[round_acc.target_sparsity == FOCUS_SPARSITY]
display(focus_rounds.pivot(index="round", columns="method", values="mean").rename(columns=LABELS)
        .assign(sparsity=focus_rounds.groupby("round", sort=False).sparsity.first()).round(3))
phases.done("ltr rounds plot")

# %% [markdown]
# ## 6 · Accuracy over training cost
#
# At the focus sparsity, every contestant's mean accuracy against what it spent: epochs (all phases and rounds) and
# wall time (scoring, detection and training). A point is on the **Pareto front** (dashed) when no other point is
# both cheaper and at least as accurate. Dense (grey star, not pruned) is shown for reference only. Wall times are
# measured on the hardware printed above, one run at a time; on a shared machine they are noisy, epochs are not.

# %%
focus = pruned[pruned.target_sparsity == FOCUS_SPARSITY]
cost = focus.groupby("method", sort=False).agg(
    acc=("test_acc", "mean"), acc_std=("test_acc", "std"), epochs=("epochs_trained", "mean"),
    epochs_std=("epochs_trained", "std"), seconds=("train_seconds", "mean"), seconds_std=("train_seconds", "std"),
).fillna(0.0)
fronts = {}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
for ax, column, xlabel in ((axes[0], "epochs", "epochs trained (dense phase and all rounds included)"),
                           (axes[1], "seconds", "wall time of the whole run (s)")):
    for method, row in cost.iterrows():
        color, marker, _ = STYLE.get(method, ("k", ".", "-"))
        ax.errorbar(row[column], 100 * row.acc, xerr=row[f"{column}_std"], yerr=100 * row.acc_std, color=color,
                    marker=marker, ms=8, capsize=3, ls="none", label=LABELS[method], mfc=FACE.get(method, color))
    front = [cost.index[i] for i in lottery.pareto_front(cost[column], cost.acc)]
    fronts[column] = front
    ax.plot(cost.loc[front, column], 100 * cost.loc[front, "acc"], "k--", lw=1, alpha=0.6, label="Pareto front")
    dense_cost = dense_runs.epochs_trained.mean() if column == "epochs" else dense_runs.train_seconds.mean()
    ax.plot(dense_cost, 100 * dense_mean, "*", color="0.5", ms=13, label="Dense (not pruned)")
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
axes[0].set_title(f"Accuracy over epochs at {FOCUS_SPARSITY:.0%} sparsity")
axes[1].set_title(f"Accuracy over wall time at {FOCUS_SPARSITY:.0%} sparsity")
axes[1].legend(fontsize=8, loc="lower right", ncol=2)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, f"{STEM}_pareto.png"), dpi=110)
plt.show()
for column, front in fronts.items():
    print(f"Pareto front over {column}: " + " -> ".join(
        f"{LABELS[m]} ({cost.loc[m, column]:.1f} {column}, {cost.loc[m, 'acc']:.1%})" for m in front))
phases.done("cost plot")

# %% [markdown]
# ## 7 · The paper's table
#
# One line per method at the focus sparsity, in the columns of the paper's tables (mean ± std over the seeds), plus
# the epochs each method trained. Emissions read `-` when the profile does not measure them (codecarbon's offline
# tracker adds seconds to every run; it is on under `paper`).

# %%
table_rows = [r for r in runs.to_dict("records") if r["method"] == "dense" or r["target_sparsity"] == FOCUS_SPARSITY]
table = ck.results.paper_table(table_rows, LABELS, FAMILIES)
table = table[["Method", "Seeds", "Test accuracy ↑", "Weight sparsity", "Epochs", "Training time (s) ↓",
               "Batch time (ms) ↓", "Peak memory (MB) ↓", "Disk (kB) ↓", "Emissions (mg) ↓"]]
print(f"{DATA} / {MODEL}, target weight sparsity {FOCUS_SPARSITY:.0%}, measured on {HARDWARE}")
display(table)
phases.done("table")


# %% [markdown]
# ## 8 · What rewinding buys, and what it costs
#
# The sentences below are computed from the runs above (they change with the profile and the seeds). A difference
# counts as real only when it exceeds the seed spread $\sqrt{\sigma_a^2+\sigma_b^2}$; with a single seed there is no
# spread, so read every verdict as anecdotal.

# %%
def say(a, b):
    g = lottery.gap(accuracy, a, b)
    for _, row in g.iterrows():
        print(f"  at {row.target_sparsity:.0%}: {LABELS[a]} - {LABELS[b]} = {100 * row.difference:+.1f} points "
              f"(spread {100 * row.spread:.1f}) -> {row.verdict}")
    return g


print("What rewinding buys over a random re-initialisation of the same mask:")
rewind_gap = say("ltr", "ltr-reinit")
print("LTR against EarlyCroP-U:")
ltr_vs_early = say("ltr", "earlycrop-u")
print("EarlyCroP-U against CroP-U (pruning when lazy vs at initialisation, same criterion):")
early_vs_init = say("earlycrop-u", "crop-u")
if "earlycrop-u-magnitude" in METHODS:
    print("Magnitude against CroP at the detector's epoch (same moment, different score):")
    how_gap = say("earlycrop-u-magnitude", "earlycrop-u")

c = cost
epochs_ratio = c.loc["ltr", "epochs"] / c.loc["earlycrop-u", "epochs"]
seconds_ratio = c.loc["ltr", "seconds"] / c.loc["earlycrop-u", "seconds"]
print(f"\nWhat it costs at {FOCUS_SPARSITY:.0%}: LTR trained {c.loc['ltr', 'epochs']:.0f} epochs, EarlyCroP-U "
      f"{c.loc['earlycrop-u', 'epochs']:.1f} and CroP-U {c.loc['crop-u', 'epochs']:.0f}: {epochs_ratio:.1f}x the epochs "
      f"and {seconds_ratio:.1f}x the wall time of EarlyCroP-U.")
focus_gap = rewind_gap.set_index("target_sparsity").loc[FOCUS_SPARSITY]
focus_ltr = ltr_vs_early.set_index("target_sparsity").loc[FOCUS_SPARSITY]
ltr_over_dense = (R + 1) * E / E
print(f"LTR here costs (R + 1) x E = ({R} + 1) x {E} = {(R + 1) * E} epochs, {ltr_over_dense:.0f}x the {E} epochs of "
      f"dense training (R + 1 = {R + 1}), against the 2.5x dense training the paper reports for LTR.")
print(f"What it buys at {FOCUS_SPARSITY:.0%}: {100 * focus_gap.difference:+.1f} points over random reinit "
      f"({focus_gap.verdict}) and {100 * focus_ltr.difference:+.1f} points over EarlyCroP-U ({focus_ltr.verdict}).")
ltr_wins = [s for s, v in zip(ltr_vs_early.target_sparsity, ltr_vs_early.verdict) if v == "LTR ahead"]
early_wins = [s for s, v in zip(ltr_vs_early.target_sparsity, ltr_vs_early.verdict) if v == "EarlyCroP-U ahead"]
print(f"LTR ahead of EarlyCroP-U at: {[f'{s:.0%}' for s in ltr_wins] or 'no sparsity'}; "
      f"EarlyCroP-U ahead at: {[f'{s:.0%}' for s in early_wins] or 'no sparsity'}; tied elsewhere.")
below_random = {}
for m in METHODS:
    if m != "random-u":
        lost = lottery.gap(accuracy, m, "random-u")
        below_random[m] = [s for s, v in zip(lost.target_sparsity, lost.verdict) if v == "Random-U ahead"]
n_early = sum(r.method == "earlycrop-u" for r in results)
forced = sum(r.method == "earlycrop-u" and bool(r.forced) for r in results)
print(f"EarlyCroP runs (CroP and magnitude) pruned at the cap of {MAX_DENSE_EPOCHS} dense epochs because the detector had not fired: "
      f"{forced} of {n_early}")
emptied = {}
for r in results:
    if any("would lose every weight" in w for w in r.warnings):
        emptied.setdefault(entry_of(r.method, r.config), []).append(f"{r.target_sparsity:.0%}")
print("Runs in which a layer would have lost every weight (it keeps one): " +
      ("; ".join(f"{LABELS[m]} at {sorted(set(v))} ({len(v)} runs)" for m, v in emptied.items()) or "none"))
print("Below the Random-U floor: " + ("; ".join(f"{LABELS[m]} at {[f'{s:.0%}' for s in v]}"
                                             for m, v in below_random.items() if v) or "no method at any sparsity"))
phases.done("verdicts")

# %% [markdown]
# ## What to notice
#
# Written by the next cell from the verdicts above (a difference within the seed spread decides nothing).

# %%
def verdicts(g, a, b):
    """'at 50 %: A ahead (+x.x); at 80 %: undecided (+y.y); …' from a gap table."""
    return "; ".join(f"at {row.target_sparsity:.0%}: "
                     + ("undecided" if row.verdict.startswith("tie") else row.verdict)
                     + f" ({100 * row.difference:+.1f} pt, spread {100 * row.spread:.1f})" for _, row in g.iterrows())


closing = [
    f"**Rewinding against its control** (LTR − random reinit of the same mask): {verdicts(rewind_gap, 'ltr', 'ltr-reinit')}.",
    f"**The bill.** LTR trains $(R+1)\\times E$ = ({R} + 1) × {E} = {(R + 1) * E} epochs, {ltr_over_dense:.0f}× a dense "
    f"training, where the paper reports about 2.5× for LTR; at {FOCUS_SPARSITY:.0%} that is {epochs_ratio:.1f}× the "
    f"epochs and {seconds_ratio:.1f}× the wall time of EarlyCroP-U (wall time moves with the machine's load).",
    f"**LTR against EarlyCroP-U:** {verdicts(ltr_vs_early, 'ltr', 'earlycrop-u')}.",
    f"**EarlyCroP-U against CroP-U** (when, same score): {verdicts(early_vs_init, 'earlycrop-u', 'crop-u')}.",
    f"**Forced prunes:** {forced} of {n_early} EarlyCroP runs (CroP and magnitude, every sparsity) pruned at the cap of {MAX_DENSE_EPOCHS} dense epochs "
    + ("(a verdict resting on them is about a fixed-epoch prune, not the detector)." if forced else
       "(every prune was the detector's)."),
    "**Below the Random-U floor:** " + ("; ".join(f"{LABELS[m]} at {[f'{s:.0%}' for s in v]}"
                                                 for m, v in below_random.items() if v) or "no method at any sparsity")
    + ". A sudden drop in a single LTR round (rather than a gradual decline) is the usual sign of a bottleneck: "
    "global magnitude pruning compares weights across layers, and a small layer whose weights happen to be small "
    "can lose almost all of them (section 4 counts each layer's survivors with `ck.prune.masks(model)`).",
]
closing_text = ck.notebook.show_markdown(closing)

# %% [markdown]
# ## Try this
# * `LTR_ROUNDS = 1`: one-shot magnitude pruning with rewinding — cheaper, and often worse at high sparsity.
# * **Is E long enough, and why this learning rate?** `python benchmarks/lesson03_convergence.py --epochs 6 20 40
#   --lr 0.002 0.02` runs this lesson's settings (dense, CroP at init, EarlyCroP-U, magnitude at $\theta_t$; 90 %,
#   seed 0) with other sparse-phase lengths and learning rates and prints each run's training loss at the end beside
#   dense's (a few minutes). Which ordering of *when* would you have reported after 6 epochs at 2e-3?
# * `REWIND_EPOCH = 0`: rewind to initialisation, as in the original lottery-ticket paper. Does the gap to the
#   random-reinit control shrink?
# * `SEEDS = [0, 1, 2, 3, 4]` and `CACHE = True`: the existing seeds replay from the cache; only the new ones train,
#   and the error bars tighten.
# * `MODEL = "cnn1d"`: a 1-D network without the large flatten → Linear layer. Does CroP at $\theta_t$ still fall
#   behind magnitude at $\theta_t$ (section 4)?
# * Add `"grasp"` and `"cropit-u"` to `METHODS` (about a minute more): where do GraSP and iterative CroP land
#   against the Random-U floor?
# * `DATA = "digits"`: the lessons' former setting, where the detector fires after the data is memorised (lesson 02).

# %%
COLUMNS = ["method", "label", "target_sparsity", "seed", "test_acc", "best_test_acc", "weight_sparsity",
           "epochs_trained", "prune_epoch", "train_seconds", "params", "flops", "nonzero_macs", "batch_time_ms",
           "peak_memory_bytes", "disk_bytes", "emissions_g"]
results_json = {
    "profile": PROFILE, "hardware": HARDWARE, "data": DATA, "model": MODEL, "width": WIDTH,
    "epochs": EPOCHS, "sparsities": SPARSITIES, "seeds": SEEDS, "focus_sparsity": FOCUS_SPARSITY,
    "methods": METHODS, "max_dense_epochs": MAX_DENSE_EPOCHS,
    "lr": sorted({r.config["lr"] for r in results}), "threads": THREADS, "workers": WORKERS,
    "ltr": {"rounds": LTR_ROUNDS, "trainings": LTR_ROUNDS + 1, "epochs_per_round": EPOCHS,
            "rewind_epoch": REWIND_EPOCH},
    "runs_total": len(results), "runs_replayed": replayed, "sweep_seconds": sweep_seconds,
    "table": table.reset_index().to_dict("records"),
    "rows": runs[COLUMNS].to_dict("records"),
    "ltr_rounds": per_round.to_dict("records"),
    "accuracy": accuracy.to_dict("records"),
    "pareto_front_epochs": fronts["epochs"], "pareto_front_seconds": fronts["seconds"],
    "rewinding_gain": rewind_gap.to_dict("records"), "ltr_vs_earlycrop": ltr_vs_early.to_dict("records"),
    "earlycrop_vs_crop": early_vs_init.to_dict("records"),
    "magnitude_vs_crop_at_theta_t": how_gap.to_dict("records") if "earlycrop-u-magnitude" in METHODS else [],
    "ltr_epochs_over_earlycrop": epochs_ratio, "ltr_seconds_over_earlycrop": seconds_ratio,
    "ltr_epochs_over_dense": ltr_over_dense,
    "detector": {"rule": RULE, "threshold": THRESHOLD, "max_dense_epochs": MAX_DENSE_EPOCHS},
    "when_how": when_how.reset_index().to_dict("records"), "dense_final_train_acc": dense_final_train_acc,
    "notice": notice_text, "closing": closing_text, "train_loss_end": loss_end,
    "kept_per_layer": {"seed": seed, "fire_epoch": the_moment.prune_epoch, "largest": big,
                       "layers": layers.rename_axis("name").reset_index().to_dict("records")},
    "phase_seconds": phases.seconds,
}
print("wrote", ck.notebook.save_results(OUTPUT_DIR, STEM, results_json))
