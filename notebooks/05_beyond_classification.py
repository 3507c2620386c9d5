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
# # 05 · Beyond classification: depth, language and control
#
# **Learning goal.** Prune networks that do not classify images — a depth-estimation network trained with an L2
# loss, a recurrent language model, and control policies trained by reinforcement learning — with the same methods
# as lessons 01–04, read the paper's plot shape (the task's metric over sparsity, dense as a line), and judge from
# the numbers whether the paper's finding carries over to these small stand-ins.
#
# **The idea.** Nothing in CroP or EarlyCroP is specific to classification: CroP keeps the weights whose removal
# least changes the *gradient flow* $g^\top g$, $g = \nabla_\theta L$, of whatever loss $L$ the network trains on, and
# EarlyCroP's detector watches the weights, not the labels. So the kit's task object (`cropkit.tasks.task`) names the loss
# every score differentiates and the metric a run reports, and the same `ck.run` prunes all of these:
#
# | the paper (Rachwan et al. 2022, §5) | here | what the stand-in keeps | what it does not |
# |---|---|---|---|
# | NYU depth (RGB → depth map), a fully convolutional residual network (FCRN), RMSE ↓ | `depth`: 2000 ray-cast 32×32 scenes (`cropkit.tasks.domains`), `fcn`: a small FCRN-style encoder–decoder | L2 loss, dense per-pixel prediction, a residual encoder–decoder with up-projections, RMSE | real indoor photographs at full resolution, a ResNet-50 encoder; RMSE here is in units of the depth's std, not metres |
# | PTB language modelling, a pointer sentinel mixture model, log-perplexity ↓ | `pydoc`: Python's own help texts, word level, 1000 words + `<unk>`; `lstm`: one LSTM layer | token cross-entropy, a recurrent network, log-perplexity in nats | PTB's 1 M tokens and 10 k words, the pointer/sentinel mixture, dropout, a tuned schedule |
# | CartPole, Acrobot-v1, LunarLander: a 3-layer fully connected policy (FLARE), return ↑ | `cartpole`, `acrobot`, `lunarlander` (gymnasium, offline; LunarLander-v3 runs on Box2D); `policy`: the zoo's 3-layer MLP, REINFORCE | the three games, the 3-layer FC policy, mean return over fixed episodes | the paper's RL algorithm and training length (LunarLander: 60 epochs of 16 episodes here, far from solved) |
#
# Under the `cpu` profile every run is small (a few seconds), so the sweep fits in minutes on two cores: what you see
# is whether the *ordering* of the methods survives in another task, not the paper's absolute numbers.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop), and cropkit.run takes its other defaults from it; the harness (--profile smoke or paper) applies 05_beyond_classification.profiles.json on top
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DOMAINS = ["depth", "pydoc", "cartpole", "acrobot", "lunarlander"]  # type: list  datasets to run, of depth, pydoc, cartpole, acrobot, lunarlander
SETTINGS = {  # the sweep makes about 30 runs per domain, so each run here takes a few seconds on one thread; eval_every 10 measures the test set every 10th epoch and after the last (the tables read the last; measuring every epoch cost a fifth of a depth run and two fifths of a game run)
    "depth": {"model": "fcn", "width": 0.5, "epochs": 12, "batch_size": 32, "limit": 512, "lr": 1e-2, "score_batches": 2, "max_dense_epochs": 6, "measure_emissions": False, "eval_every": 10},  # a quarter of the 2000 scenes; 12 epochs at 1e-2 (benchmarks/lesson05_budget.py: dense seed 0 at 4 epochs and 2e-3, RMSE 0.61, its training loss still falling 9 % in the last epoch; here 0.39, 3 %)
    "pydoc": {"model": "lstm", "width": 0.5, "epochs": 10, "batch_size": 32, "limit": 1024, "lr": 1e-2, "score_batches": 2, "max_dense_epochs": 6, "measure_emissions": False, "eval_every": 10},  # a third of the sequences; 10 epochs at 1e-2 (benchmarks/lesson05_budget.py: dense seed 0 at 3 epochs and 5e-3, 5.17 nats; here 4.38, its training loss falling 0.4 % in the last epoch)
    "cartpole": {"model": "policy", "width": 0.5, "epochs": 30, "batch_size": 16, "limit": None, "lr": 5e-3, "schedule": "constant", "score_batches": 1, "max_dense_epochs": 10, "measure_emissions": False, "eval_every": 10},  # REINFORCE: 16 episodes and one step per epoch (CartPole reaches 500 within 30 epochs)
    "acrobot": {"model": "policy", "width": 0.5, "epochs": 30, "batch_size": 16, "limit": None, "lr": 5e-3, "schedule": "constant", "score_batches": 1, "max_dense_epochs": 10, "measure_emissions": False, "eval_every": 10},  # as CartPole
    "lunarlander": {"model": "policy", "width": 0.5, "epochs": 60, "batch_size": 16, "limit": None, "lr": 2e-3, "schedule": "constant", "score_batches": 1, "max_dense_epochs": 10, "measure_emissions": False, "eval_every": 10},  # dense, 3 seeds (random policy: -193): 30 epochs at 5e-3 -118/-51; 60 at 5e-3 -102/238/150; 60 at 2e-3 -5/43/10, the steadiest; ~20 s a run
}  # type: dict  cropkit.run settings of each domain
SPARSITIES = {"depth": [0.5, 0.9, 0.95], "pydoc": [0.5, 0.9, 0.98], "cartpole": [0.5, 0.8, 0.9], "acrobot": [0.5, 0.8, 0.9], "lunarlander": [0.5, 0.9]}  # type: dict|list  target weight sparsities of each domain, where the methods part (one seed: at 98 % the at-init depth nets are at the constant predictor RMSE, 1, and EarlyCroP-U at 0.93); a list: the same for every domain
SEEDS = [0, 1]  # type: list  seeds of every configuration
METHODS = ["earlycrop-u", "earlycrop-s", "crop-u", "snip", "random-u"]  # type: list  contestants; dense runs as the reference
RULE = "reference"  # type: str  rule of the EarlyCroP detector, as in lessons 02-04
THRESHOLD = 0.7  # type: float|None  threshold tau of the detector rule; None takes the rule default
WIDTH = None  # type: float|None  width multiplier of every network, over SETTINGS; None keeps the SETTINGS value
EPOCHS = None  # type: int|None  epochs E of every sparse phase (and of dense training), over SETTINGS; None keeps the SETTINGS value
BATCH_SIZE = None  # type: int|None  batch size, episodes per epoch for control, over SETTINGS; None keeps the SETTINGS value
LIMIT = None  # type: int|None  training samples kept, steps per training episode for control, over SETTINGS; None keeps the SETTINGS value
SCORE_BATCHES = None  # type: int|None  training batches the pruning scores see, over SETTINGS; None keeps the SETTINGS value
MAX_DENSE_EPOCHS = None  # type: int|None  longest dense phase of EarlyCroP before the prune is forced, over SETTINGS; None keeps the SETTINGS value
MEASURE_EMISSIONS = None  # type: bool|None  estimate each run with codecarbon, over SETTINGS; None keeps the SETTINGS value
THREADS = 1  # type: int|None  torch CPU threads per run; None lets torch choose
WORKERS = 2  # type: int  runs at once, each in its own one-thread process (2 cores: two runs side by side)
CACHE = True  # type: bool  replay runs stored in outputs/cache; False trains everything again

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import cropkit as ck
from cropkit.experiments import grid, runs
from cropkit.methods import registry
from cropkit.tasks import control, domains, task as tasks

STEM = "05_beyond_classification"
phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
if isinstance(SPARSITIES, (list, tuple)):  # one list: the same sweep for every domain
    SPARSITIES = {d: list(SPARSITIES) for d in DOMAINS}
if THREADS:
    torch.set_num_threads(THREADS)
OVERRIDES = {k: v for k, v in dict(width=WIDTH, epochs=EPOCHS, batch_size=BATCH_SIZE, limit=LIMIT,
                                   score_batches=SCORE_BATCHES, max_dense_epochs=MAX_DENSE_EPOCHS,
                                   measure_emissions=MEASURE_EMISSIONS).items() if v is not None}
SETTINGS = {d: {**SETTINGS[d], **OVERRIDES} for d in DOMAINS}  # each domain's runs, with the overrides on top
TITLES = {"depth": "Depth (regression)", "pydoc": "pydoc (language)", "cartpole": "CartPole-v1 (control)",
          "acrobot": "Acrobot-v1 (control)", "lunarlander": "LunarLander-v3 (control)"}
AT_INIT = [m for m in ("crop-u", "snip", "random-u") if m in METHODS]  # pruned before the first step
# EarlyCroP trains its dense phase (t <= max_dense_epochs) on top of E sparse epochs; "dense-long" is dense training
# for max_dense_epochs + E epochs, at least as long as any EarlyCroP run: the reference of the verdicts (section 7).
LABELS = {**registry.LABELS, "dense-long": "Dense, as long"}
DENSE = ["dense", "dense-long"]
HARDWARE = ck.hardware.describe()


def long_epochs(domain):
    """Epochs of "dense-long": the longest EarlyCroP run's, max_dense_epochs + E."""
    return SETTINGS[domain]["epochs"] + SETTINGS[domain]["max_dense_epochs"]


def options_for(method, domain):
    """What `ck.run` gets for ``method`` on ``domain``; EarlyCroP also gets the detector of lessons 02-04."""
    options = dict(SETTINGS[domain], profile=PROFILE, cache=CACHE, progress=False)
    if method == "dense-long":
        options["epochs"] = long_epochs(domain)
    if method.startswith("earlycrop"):
        options.update(rule=RULE, threshold=THRESHOLD)
    return options


# Which method runs on which network: a method the network cannot take raises a ValueError before any training.
SKIPPED = {}
for domain in DOMAINS:
    for method in METHODS:
        try:
            runs.settings(method, data=domain, **{k: v for k, v in options_for(method, domain).items()
                                                     if k not in ("cache", "progress")})
        except ValueError as err:
            SKIPPED.setdefault(domain, {})[method] = str(err)
setting_table = pd.DataFrame(SETTINGS).T.assign(sparsities=[SPARSITIES[d] for d in DOMAINS])
print(f"profile {PROFILE}, seeds {SEEDS}, {WORKERS} run(s) at a time, measured on {HARDWARE}")
print(f"EarlyCroP's detector: {RULE} rule, tau = {THRESHOLD}")
display(setting_table)
for domain, why in SKIPPED.items():
    for method, message in why.items():
        print(f"{LABELS[method]} is not run on {domain} ({SETTINGS[domain]['model']}): {message}")
phases.done("setup")

# %% [markdown]
# EarlyCroP-S removes whole channels or units (structured pruning). It runs on the `fcn` (its convolution channels
# are removed as in a CNN) and on the `policy` (hidden units of a fully connected net), but not on the `lstm`: the
# message above, the kit's own `ValueError`, says why — a hidden unit of an LSTM is four gate rows of two layers and
# a column of the recurrent one, tied together through time, which the kit's channel surgery does not trace.

# %% [markdown]
# ## 1 · What a number means in each domain
#
# Before any pruning: the score of a predictor that learned nothing useful, so that "RMSE 0.6" or "return 200" can
# be read. **Depth**: the constant-mean predictor (RMSE ≈ 1 by construction, since targets are standardised) and the
# per-pixel mean map (the average training depth at each pixel: it knows the floor is near at the bottom).
# **pydoc**: the uniform distribution over the vocabulary ($\log V$ nats) and the unigram frequencies of the training
# text. **Control**: a uniformly random policy over the same evaluation episodes as every run.

# %%
REFERENCES = {}
if "depth" in DOMAINS:
    d = domains.depth_data()
    REFERENCES["depth"] = {
        "constant-mean predictor": d["y_test"].pow(2).mean().sqrt().item(),  # training mean is 0 after standardising
        "per-pixel mean map": (d["y_test"] - d["y_train"].mean(0)).pow(2).mean().sqrt().item()}
if "pydoc" in DOMAINS:
    corpus = domains.pydoc_corpus()
    V = len(corpus["words"])
    counts = torch.bincount(corpus["train"], minlength=V).double() + 1  # add-one: no test word gets probability 0
    REFERENCES["pydoc"] = {"uniform over the vocabulary": math.log(V),
                           "unigram frequencies": -(counts / counts.sum()).log()[corpus["test"]].mean().item()}
for env in control.ENVS:
    if env in DOMAINS:
        data = ck.data.load(env, batch_size=1, seed=0)
        uniform = torch.nn.Linear(data.input_shape[0], data.num_classes)  # zero weights: every action equally likely
        torch.nn.init.zeros_(uniform.weight), torch.nn.init.zeros_(uniform.bias)
        REFERENCES[env] = {"random policy": control.evaluate(uniform, data.test)[1]}
METRIC = {d: ck.data.of_data(d) for d in DOMAINS}
UNITS = {"rmse": "test RMSE ↓ (depth std units)", "log_ppl": "test log-perplexity ↓ (nats / token)",
         "return": "mean return ↑ (10 evaluation episodes)"}
for domain, refs in REFERENCES.items():
    for name, value in refs.items():
        print(f"{domain:>9}  {METRIC[domain].metric:>8} of the {name}: {value:.3f}")
phases.done("references")

# %% [markdown]
# ## 2 · What "gradient flow" means when the data are the policy's own
#
# A control policy is trained by **REINFORCE with a baseline** (Williams 1992; `cropkit.tasks.control`): each epoch it
# plays `BATCH_SIZE` whole episodes, sampling its actions, and takes one gradient step on
# $L(\theta) = -\frac1N \sum_t \log \pi_\theta(a_t \mid s_t)\,\hat A_t$, where $\hat A_t$ is the return-to-go
# minus its mean at the same time step over the batch, standardised. There is no fixed data set: the transitions are
# collected by the policy itself. So the scoring batch a criterion sees is an **on-policy** batch collected by the
# very network about to be pruned, with the advantages held fixed, and $g = \nabla_\theta L$ is the policy gradient.
# CroP keeps the weights whose removal least changes $\lVert g \rVert^2$ on that batch: the direction and strength
# in which the policy is about to improve its expected return. Below, one such batch and its gradient flow for a
# fresh policy.

# %%
CONTROL = [d for d in DOMAINS if d in control.ENVS]
if CONTROL:
    env = CONTROL[0]
    data = ck.data.load(env, batch_size=SETTINGS[env]["batch_size"], seed=0)  # whole episodes, however long
    policy = ck.models.build("policy", data.input_shape, data.num_classes, width=SETTINGS[env]["width"], seed=0)
    (inputs, targets), = data.scoring_batches(1, SETTINGS[env]["batch_size"], 0, model=policy)
    loss = data.task.loss_fn(policy(inputs), targets)
    g = torch.autograd.grad(loss, [p for p in policy.parameters()])
    episodes = int(targets[:, 3].sum())
    print(f"{env}: one on-policy scoring batch of {episodes} episodes = {len(inputs)} transitions; inputs "
          f"{tuple(inputs.shape)} (observations), targets {tuple(targets.shape)} (action, advantage, episode return, "
          f"first-step flag)")
    print(f"mean return of those episodes {targets[targets[:, 3] == 1, 2].mean():.1f}; policy-gradient loss "
          f"{loss.item():+.4f}; gradient flow g^T g = {sum((x ** 2).sum() for x in g).item():.4g}")
phases.done("gradient flow")

# %% [markdown]
# ## 3 · The sweep
#
# Every method at every sparsity of its domain and every seed, and dense training twice per seed: for the E epochs
# every method's sparse phase lasts (the paper's dense line), and *as long* as the longest EarlyCroP run
# (max_dense_epochs + E), so that EarlyCroP's extra dense epochs are not mistaken for a gain from pruning. Runs go
# `WORKERS` at a time, each in its own one-thread process (on two cores, two small runs side by side finish sooner
# than one run on two threads). `ck.run` stores each run in a cache keyed by its complete configuration and the
# code's version, so running this notebook again replays the runs (set `CACHE = False` to train again). Each run measures
# its test set every `eval_every` epochs and after its last (`SETTINGS`): the tables read the last, and measuring draws
# no random number the training uses, so a run trains exactly as when it is measured every epoch — only its
# `best_test_metric` sees fewer epochs.

# %%
def jobs_for(domain):
    """The domain's runs as grids (`cropkit.experiments.grid`): dense (E epochs), the methods it supports (EarlyCroP
    with the detector of lessons 02-04), and "dense-long" (dense as long as the longest EarlyCroP run)."""
    methods = [m for m in METHODS if m not in SKIPPED.get(domain, {})]
    early = [m for m in methods if m.startswith("earlycrop")]
    common = dict(SETTINGS[domain], data=domain, profile=PROFILE, cache=CACHE, progress=False,
                  threads=THREADS or 1)
    return ([("dense", job) for job in grid.plan(["dense"], seeds=SEEDS, **common)]
            + [(job.entry, job) for job in grid.plan([m for m in methods if m not in early], SPARSITIES[domain],
                                                     SEEDS, **common)]
            + [(job.entry, job) for job in grid.plan(early, SPARSITIES[domain], SEEDS, rule=RULE,
                                                     threshold=THRESHOLD, **common)]
            + [("dense-long", job) for job in grid.plan(["dense"], seeds=SEEDS,
                                                        **{**common, "epochs": long_epochs(domain)})])


PLAN = [(domain, name, job) for domain in DOMAINS for name, job in jobs_for(domain)]
start = time.perf_counter()
results = grid.execute([job for _, _, job in PLAN], "processes" if WORKERS > 1 else "here",
                       workers=WORKERS)
sweep_seconds = time.perf_counter() - start


def forced(result):
    return bool(result.forced)


def last_fall(history):
    """How much the training loss fell in the last epoch, as a share of the epoch before's (None: one epoch)."""
    if len(history) < 2 or not history[-2]["train_loss"]:
        return None
    return 1 - history[-1]["train_loss"] / history[-2]["train_loss"]


RUNS = pd.DataFrame([dict(domain=domain, method=name, label=LABELS[name], target_sparsity=r.target_sparsity,
                          seed=r.seed, metric=r.metric, test_metric=r.test_metric,
                          best_test_metric=r.best_test_metric, weight_sparsity=r.weight_sparsity,
                          node_sparsity=r.node_sparsity, prune_epoch=r.prune_epoch, forced=forced(r),
                          epochs_trained=r.epochs_trained, train_seconds=r.train_seconds, from_cache=r.from_cache,
                          train_loss_end=r.history[-1]["train_loss"], train_loss_fall=last_fall(r.history))
                     for (domain, name, _), r in zip(PLAN, results)])
replayed = int(RUNS.from_cache.sum())
print(f"{len(RUNS)} runs ({replayed} replayed from the cache) in {sweep_seconds:.0f} s wall, "
      f"{RUNS.train_seconds.sum():.0f} s of training in all")
display(RUNS.groupby("domain", sort=False).agg(runs=("seed", "size"), seconds=("train_seconds", "sum"))
        .round(1))
phases.done("sweep")

# %% [markdown]
# Did every run reach its target sparsity? (Structured EarlyCroP-S removes whole nodes, then prunes single weights
# until the weight target is met; dense keeps all.)

# %%
pruned = RUNS[~RUNS.method.isin(DENSE)]
deviation = (pruned.weight_sparsity - pruned.target_sparsity).abs()
print(f"largest gap between achieved and target weight sparsity: {deviation.max():.3%} (allowed: 1 %); "
      f"dense runs' weight sparsity: {RUNS[RUNS.method.isin(DENSE)].weight_sparsity.max():.3%}")
phases.done("checks")

# %% [markdown]
# ## 4 · The tables: mean ± std over the seeds
#
# One table per domain: rows are methods, columns the target sparsities; dense sits in its own column at 0 %
# ("as long": max_dense_epochs + E epochs, printed in the header).
# Arrows say which way is better.

# %%
SUMMARY = (RUNS.groupby(["domain", "method", "target_sparsity"], sort=False)
           .agg(mean=("test_metric", "mean"), std=("test_metric", "std"), n=("test_metric", "size"),
                weight_sparsity=("weight_sparsity", "mean"), metric=("metric", "first"))
           .fillna({"std": 0.0}).reset_index())
for domain in DOMAINS:
    s = SUMMARY[SUMMARY.domain == domain]
    cells = s.assign(cell=[f"{m:.3f} ± {sd:.3f}" for m, sd in zip(s["mean"], s["std"])])
    table = cells.pivot(index="method", columns="target_sparsity", values="cell")
    table = table.loc[[m for m in DENSE + METHODS if m in table.index]].rename(index=LABELS).fillna("")
    table.columns = [f"{p:.0%}" for p in table.columns]
    arrow = "↑" if METRIC[domain].higher_is_better else "↓"
    print(f"\n{TITLES[domain]} · test {METRIC[domain].metric} {arrow} · {len(SEEDS)} seed(s) · E = "
          f"{SETTINGS[domain]['epochs']}, as long = {long_epochs(domain)}"
          + "".join(f" · {k}: {v:.3f}" for k, v in REFERENCES.get(domain, {}).items()))
    display(table)
phases.done("tables")

# %% [markdown]
# ### Has training converged?
#
# These tables compare the methods at one short budget, the same for all. On depth and pydoc the training loss says
# whether that budget was enough: below, the last epoch's training loss (mean over seeds) of every row, and how much
# dense's fell in that last epoch. A dense run whose loss still falls by several percent an epoch, or a pruned row
# far above dense's, is still learning: its metric is where it stood when the budget ran out, and a verdict between
# such rows is one about speed of learning, not about where they would end. (For the control games the REINFORCE
# loss is not a measure of progress — its advantages are re-standardised every batch — so the return, the task's
# metric, is the one to read.)

# %%
SUPERVISED = [d for d in DOMAINS if d not in control.ENVS]
CONVERGENCE = {}
for domain in SUPERVISED:
    g = RUNS[RUNS.domain == domain]
    losses = g.groupby(["method", "target_sparsity"], sort=False).train_loss_end.mean()
    falls = {m: g[g.method == m].train_loss_fall.dropna() for m in DENSE}
    CONVERGENCE[domain] = {
        "train_loss_end": [{"method": m, "target_sparsity": p, "mean": v} for (m, p), v in losses.items()],
        "dense_last_epoch_fall": {m: float(f.mean()) if len(f) else None for m, f in falls.items()}}
    table = losses.unstack().loc[[m for m in DENSE + METHODS if m in losses.index]].rename(index=LABELS)
    table.columns = [f"{p:.0%}" for p in table.columns]
    print(f"\n{TITLES[domain]} · training loss of the last epoch (mean over seeds) · E = {SETTINGS[domain]['epochs']}")
    display(table.round(3).astype(object).where(table.notna(), ""))  # blank where a row has no such sparsity
    for m, fall in CONVERGENCE[domain]["dense_last_epoch_fall"].items():
        if fall is not None:
            print(f"  {LABELS[m]}: training loss fell {fall:.1%} in its last epoch"
                  + (" - still learning" if fall > 0.05 else ""))
    pruned = losses.drop(DENSE, level="method", errors="ignore")
    if len(pruned):
        (worst, at), dense_loss = pruned.idxmax(), float(losses.loc[("dense", 0.0)])
        CONVERGENCE[domain]["pruned_end_over_dense"] = [float(pruned.min() / dense_loss),
                                                        float(pruned.max() / dense_loss)]
        print(f"  pruned rows end at {pruned.min() / dense_loss:.2f}-{pruned.max() / dense_loss:.2f}x dense's "
              f"training loss ({dense_loss:.3f}); highest: {LABELS[worst]} at {at:.0%}")
phases.done("convergence")

# %% [markdown]
# ## 5 · The paper's plot: the metric over sparsity
#
# One panel per domain, as in the paper's figures for depth, PTB and the control games: the task's metric (mean over
# the seeds, one standard deviation as error bars) over the target sparsity, dense as a horizontal line with its
# ± std band (dashed: dense trained as long as the longest EarlyCroP run), and the know-nothing references of
# section 1 dotted. The horizontal axis spaces sparsities by
# $\log(1/\text{density})$, so that 90 % → 98 % gets the room it deserves.

# %%
STYLE = {"earlycrop-u": ("C0", "s", "-"), "earlycrop-s": ("C9", "s", "--"), "crop-u": ("C2", "^", "-"),
         "snip": ("C1", "D", "-"), "random-u": ("C7", "x", "--"), "grasp": ("C4", "P", "-"),
         "cropit-u": ("C2", "v", "--")}


def position(sparsity):
    return -np.log10(1 - np.asarray(sparsity, dtype=float))


columns = min(len(DOMAINS), 2)
rows = math.ceil(len(DOMAINS) / columns)
fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.3 * rows), squeeze=False)
for ax, domain in zip(axes.flat, DOMAINS):
    s = SUMMARY[SUMMARY.domain == domain]
    dense = s[s.method == "dense"].iloc[0]
    ax.axhspan(dense["mean"] - dense["std"], dense["mean"] + dense["std"], color="0.85", zorder=0)
    ax.axhline(dense["mean"], color="0.3", lw=1.2, label=f"Dense, E = {SETTINGS[domain]['epochs']} (± std band)")
    long = s[s.method == "dense-long"].iloc[0]
    ax.axhspan(long["mean"] - long["std"], long["mean"] + long["std"], color="0.6", alpha=0.25, zorder=0)
    ax.axhline(long["mean"], color="0.15", lw=1.2, ls="--",
               label=f"Dense, as long: {long_epochs(domain)} epochs (± std)")
    for (name, value), dash in zip(REFERENCES.get(domain, {}).items(), (":", "-.")):
        ax.axhline(value, color="0.45", lw=1, ls=dash, label=name)
    ax.legend(fontsize=8, loc="best")  # dense and the references; the methods get one legend below the panels
    for method in METHODS:
        g = s[s.method == method]
        if len(g):
            color, marker, line = STYLE.get(method, ("k", ".", "-"))
            ax.errorbar(position(g.target_sparsity), g["mean"], yerr=g["std"], color=color, marker=marker, ls=line,
                        capsize=3, label=LABELS[method])
    ax.set_xticks(position(SPARSITIES[domain]), [f"{p:.0%}" for p in SPARSITIES[domain]])
    ax.set(xlabel="target weight sparsity (spaced by log of 1/density)", ylabel=UNITS[METRIC[domain].metric],
           title=f"{TITLES[domain]} · {SETTINGS[domain]['model']}")
    ax.grid(alpha=0.3)
for ax in list(axes.flat)[len(DOMAINS):]:
    ax.axis("off")
handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels()) if label in
           {LABELS[m] for m in METHODS}}
fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=10,
           bbox_to_anchor=(0.5, -0.04))
fig.suptitle(f"The metric over sparsity · mean ± std over {len(SEEDS)} seed(s) · profile {PROFILE}", y=1.0)
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, f"{STEM}_sweep.png"), dpi=110, bbox_inches="tight")
plt.show()
phases.done("plot")

# %% [markdown]
# ## 6 · When did EarlyCroP prune?
#
# EarlyCroP trains dense until its detector fires (here the rule of lessons 02–04) and is forced to prune at
# `max_dense_epochs` if it never does — then it is just "prune after a fixed number of epochs", and a warning says so.
# Per domain: the epochs at which it pruned, and how many of those prunes were forced. Note that EarlyCroP trains
# its dense phase *on top of* the E epochs every other method trains. A rule cannot fire before it has two changes to
# compare (`ck.timing.ratios`: epoch 3 for the reference rule, 2 for the seed rule); where the cap is that epoch, the
# detector had a single chance, and "fired" and "forced" both mean "pruned after that many epochs" — the line below
# the table says where.

# %%
early = RUNS[RUNS.method.str.startswith("earlycrop")]
DETECTOR = {}
for (domain, method), g in early.groupby(["domain", "method"], sort=False):
    DETECTOR.setdefault(domain, {})[method] = dict(
        prune_epochs=sorted(int(e) for e in g.prune_epoch), forced=int(g.forced.sum()), runs=len(g),
        max_dense_epochs=SETTINGS[domain]["max_dense_epochs"], sparse_epochs=SETTINGS[domain]["epochs"])
    d = DETECTOR[domain][method]
    print(f"{TITLES[domain]:>22} {LABELS[method]:>12}: pruned after epochs {d['prune_epochs']}, forced at the cap of "
          f"{d['max_dense_epochs']} in {d['forced']} of {d['runs']} runs; then {d['sparse_epochs']} sparse epochs")
EARLIEST = ck.timing.ratios([1.0] * 5, RULE)[0][0]  # the first epoch that has a ratio
ONE_CHANCE = [d for d in DETECTOR if SETTINGS[d]["max_dense_epochs"] <= EARLIEST]
print(f"the {RULE} rule can fire from epoch {EARLIEST} on; a single chance (cap = that epoch) in:",
      ", ".join(TITLES[d] for d in ONE_CHANCE) or "no domain")
phases.done("detector")

# %% [markdown]
# ## 7 · The paper's finding, and this kit's
#
# **The paper's claim** (Rachwan et al. 2022, §5, figures for NYU depth, PTB and the control games): EarlyCroP keeps
# the RMSE on depth estimation, the log-perplexity on PTB and the return on the control games close to the dense
# network's up to high sparsity, and does better than the baselines that prune at initialisation.
#
# **The rule used here**, per domain and target sparsity $p$, with $\sigma$ the seeds' standard deviations:
# * *close to dense*: EarlyCroP-U is better than dense **trained as long** (max_dense_epochs + E epochs, so that
#   EarlyCroP's extra dense epochs are not counted as a gain from pruning), or worse by at most the seed spread
#   $\sqrt{\sigma_E^2+\sigma_D^2}$;
# * *ahead of at-init*: EarlyCroP-U is at least as good as the best of the at-init methods (CroP-U, SNIP, Random-U)
#   at $p$, up to the spread $\sqrt{\sigma_E^2+\sigma_B^2}$.
#
# A domain is **reproduced** when both hold at every swept sparsity, **not reproduced** when they hold together at
# none, and **mixed** otherwise; **undecided** when dense itself does not beat the first know-nothing reference of
# section 1 by more than its spread (then there is nothing for pruning to keep). With one seed there is no spread and
# any difference counts; with two, the spread is itself a rough estimate. Read the verdicts below as this kit's
# stand-ins speaking, at these sizes.

# %%
def better(domain, a, b):
    """a − b in the direction of "better" (positive: a is better)."""
    return (a - b) if METRIC[domain].higher_is_better else (b - a)


def standing(gap, spread):
    """How EarlyCroP-U stands, in words: ahead / behind beyond the spread, or tied within it."""
    word = "tied within the spread" if abs(gap) <= spread else "ahead" if gap > 0 else "behind"
    return f"{'better' if gap >= 0 else 'worse'} by {abs(gap):.3f} (spread {spread:.3f}), {word}"


VERDICTS = {}
for domain in DOMAINS:  # the rule above is ck.verdicts.against_dense
    s = SUMMARY[SUMMARY.domain == domain].set_index(["method", "target_sparsity"])
    dense = s.loc[("dense-long", 0.0)]
    floor_name, floor = next(iter(REFERENCES[domain].items())) if domain in REFERENCES else (None, None)
    VERDICTS[domain] = ck.verdicts.against_dense(
        {key: (row["mean"], row["std"]) for key, row in s.iterrows()}, SPARSITIES[domain],
        METRIC[domain].higher_is_better, AT_INIT, floor=None if floor is None else (floor_name, floor))
    verdict, per_sparsity = VERDICTS[domain]["verdict"], VERDICTS[domain]["per_sparsity"]
    print(f"\n{TITLES[domain]}: {verdict.upper() if ':' not in verdict else verdict}")
    for name, value in REFERENCES.get(domain, {}).items():
        print(f"  dense as long {dense['mean']:.3f} ± {dense['std']:.3f} against the {name} {value:.3f}: "
              f"{'beats it' if better(domain, dense['mean'], value) > dense['std'] else 'does NOT beat it'}")
    for r in per_sparsity:
        line = (f"  at {r['sparsity']:.0%}: EarlyCroP-U {r['earlycrop_u']:.3f} vs dense as long {r['dense']:.3f}: "
                f"{standing(r['gap_to_dense'], r['spread_dense'])} -> "
                f"{'close' if r['close_to_dense'] else 'NOT close'}")
        if "best_at_init" in r:
            line += (f"; vs the best at-init, {LABELS[r['best_at_init']]} {r['best_at_init_value']:.3f}: "
                     f"{standing(r['gap_to_at_init'], r['spread_at_init'])}")
        print(line)
    if "spread_over_learned" in VERDICTS[domain]:
        resolution = VERDICTS[domain]["spread_over_learned"]
        print(f"  the widest seed spread above is {resolution:.0%} of what dense as long learned beyond the "
              f"{floor_name}" + (": too wide for this verdict to say much; add seeds" if resolution > 0.2 else ""))
    up_to = VERDICTS[domain]["close_to_dense_up_to"]
    print(f"  EarlyCroP-U stays close to dense up to: {'no swept sparsity' if up_to is None else format(up_to, '.0%')}")
    if ("earlycrop-s", SPARSITIES[domain][-1]) in s.index:
        es = s.loc[("earlycrop-s", SPARSITIES[domain][-1])]
        print(f"  EarlyCroP-S at {SPARSITIES[domain][-1]:.0%}: {es['mean']:.3f} ± {es['std']:.3f} "
              f"(dense as long {dense['mean']:.3f} ± {dense['std']:.3f})")


def at(sparsities):
    return ", ".join(f"{p:.0%}" for p in sparsities) or "no swept sparsity"


print("\nThe paper: close to dense up to high sparsity, and better than the at-init baselines. This kit, per domain:")
for d, v in VERDICTS.items():
    rows = v["per_sparsity"]
    print(f"  {d}: {v['verdict']} - close to dense as long at "
          f"{at(r['sparsity'] for r in rows if r['close_to_dense'])}; "
          f"at least as good as the best at-init method at "
          f"{at(r['sparsity'] for r in rows if r.get('ahead_of_at_init'))}")
phases.done("verdicts")

# %% [markdown]
# ## What to notice
#
# * **Read each panel against its dotted lines.** A network pruned so far that it sits on the dotted reference has
#   learned nothing a constant, a word count or a coin toss would not know. Where every method sits on it, the
#   sparsity is past what this small network can give up, whatever the criterion.
# * **The verdict lines above** name, per domain, where EarlyCroP-U stayed within the seeds' spread of dense and
#   whether it kept up with the best at-init method; the final line sums them up. For a "mixed" domain the lines
#   say at which sparsities the rule failed, and by how much; the "widest seed spread" line says whether two seeds
#   can tell the methods apart at all.
# * **EarlyCroP trains longer.** Section 6 printed how many dense epochs EarlyCroP trained before pruning; dense and
#   the at-init methods train only the E sparse-phase epochs. At these tiny budgets a few extra epochs can matter as
#   much as the pruning criterion: compare the two dense rows of each table (E epochs, and as long as EarlyCroP). An
#   EarlyCroP network that beats dense at E epochs but not dense as long has gained from its training time, not
#   from pruning. The verdicts use dense as long. The at-init methods are not given the extra epochs (as in the
#   paper, where the dense phase is a small share of 80+ epochs; here it is not).
# * **Forced prunes.** Where section 6 says a prune was forced at the cap, EarlyCroP's detector did not fire in
#   time, and the run measures "CroP after a fixed number of epochs", not the detector.
# * **Budgets.** Section 4's convergence lines say whether dense was still learning when its epochs ran out, and how
#   far above dense's each pruned row's training loss ends. The depth and pydoc budgets were sized so that dense
#   converges (`benchmarks/lesson05_budget.py` prints dense at the old and new budgets); where a pruned row still
#   ends far above dense, its lead or lag is one in how fast it learns, and `EPOCHS` (try this, below) shows whether
#   it lasts.
# * **The language stand-in is tiny.** Section 7 printed whether dense beats the unigram reference. Where it does
#   not, the LSTM has not yet learned to use context at this size, and the methods differ mostly in how much of the
#   word frequencies their pruned network learns in a few epochs.
# * **Control is noisy.** A return averages only 10 evaluation episodes, and REINFORCE policies differ a lot from
#   seed to seed (Acrobot most: a policy that stops swinging finds no reward to learn from). The error bars are wide;
#   read the verdicts with them. LunarLander learns slowest: in 60 epochs of REINFORCE the dense policy climbs above
#   the random policy's dotted line but stays far below 200, the return that counts as solving the game, so its
#   panel compares policies that are still learning to land.
#
# ## Try this
# * `SEEDS = [0, 1, 2]`: the cached seeds replay and only the third trains; do the verdicts hold?
# * `DOMAINS = ["cartpole"]` and `SPARSITIES = [0.9, 0.95, 0.98]`: how far can a 3-layer policy be pruned before
#   it falls to the random policy's return?
# * `DOMAINS = ["depth"]` with `EPOCHS = 4`: which ordering of the methods survives when every method trains a third
#   as long, and what does section 4 say about convergence then?
# * Add `"grasp"` to `METHODS`: GraSP (Wang et al. 2020) keeps weights that *increase* gradient flow; where does it
#   land on these tasks?
# * `MAX_DENSE_EPOCHS = 1`: EarlyCroP prunes after one epoch whatever the detector says. How much of its advantage
#   over CroP-U survives?

# %%
RESULTS_JSON = {
    "profile": PROFILE, "hardware": HARDWARE, "domains": DOMAINS, "methods": METHODS, "seeds": SEEDS,
    "sparsities": SPARSITIES, "settings": SETTINGS,
    "detector": {"rule": RULE, "threshold": THRESHOLD, "per_domain": DETECTOR},
    "skipped": SKIPPED, "references": REFERENCES,
    "metrics": {d: dict(metric=METRIC[d].metric, higher_is_better=METRIC[d].higher_is_better) for d in DOMAINS},
    "rows": SUMMARY.to_dict("records"), "runs": RUNS.to_dict("records"),
    "convergence": CONVERGENCE,
    "runs_total": len(RUNS), "runs_replayed": replayed, "sweep_seconds": sweep_seconds, "workers": WORKERS,
    "verdicts": VERDICTS, "phase_seconds": phases.seconds,
}
print("wrote", ck.notebook.save_results(OUTPUT_DIR, STEM, RESULTS_JSON))
