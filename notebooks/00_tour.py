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
# # 00 · A five-minute tour of cropkit
#
# **Learning goal.** Load a dataset, build a network, train it with a progress bar, and measure what it costs:
# parameters, FLOPs, time per training step and memory. Every later lesson prunes a network and asks how these
# numbers change, so we first see them for a dense one.
#
# **The idea.** A network's *cost* has several faces. Parameters decide disk size; FLOPs decide the arithmetic of
# one forward pass; the *batch time* (one forward + backward + optimizer step) and the *peak memory* are what you
# actually wait for and pay for. Pruning can reduce all of them — but only if it removes whole structures, as
# lesson 04 shows.

# %% tags=["hosted-install"]
# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+https://github.com/cropkit/cropkit"])
    importlib.invalidate_caches()  # let this running kernel see the new package

# %% tags=["parameters"]
PROFILE = "cpu"  # type: str  the values below are the cpu profile (a laptop); the harness (--profile smoke or paper) applies 00_tour.profiles.json on top
OUTPUT_DIR = "outputs"  # type: str  where the JSON results and figures are written
DATA = "digits"  # type: str  dataset name
MODEL = "cnn"  # type: str  model name
WIDTH = 1.0  # type: float  width multiplier
EPOCHS = 15  # type: int  training epochs
BATCH_SIZE = 64  # type: int  training batch size
LIMIT = None  # type: int|None  training samples kept, the first ones; None keeps them all
SEED = 0  # type: int  seeds the initialisation and the shuffling

# %%
import matplotlib.pyplot as plt
import torch

import cropkit as ck
from cropkit.core.layers import prunable_layers

phases = ck.notebook.Phases()  # wall seconds of each phase, printed as it ends and saved in the JSON
print("measured on:", ck.hardware.describe())
phases.done("setup")

# %% [markdown]
# ## 1 · Data
# `ck.data.load` returns training and test loaders plus what a model needs to know: the input shape and the number
# of classes. `digits` is scikit-learn's bundled set of 1797 handwritten 8×8 digits, so this runs offline.

# %%
data = ck.data.load(DATA, batch_size=BATCH_SIZE, seed=SEED, limit=LIMIT)
print(f"{DATA}: input shape {data.input_shape}, {data.num_classes} classes, "
      f"{len(data.train.dataset)} training and {len(data.test.dataset)} test samples")

x, y = next(iter(data.train))
if len(data.input_shape) == 3:
    fig, axes = plt.subplots(2, 8, figsize=(10, 3))
    for ax, img, label in zip(axes.flat, x, y):
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
        ax.set_title(f"label {label.item()}", fontsize=9)
        ax.axis("off")
    fig.suptitle("A few training images (standardised)")
    plt.show()
phases.done("data")

# %% [markdown]
# ## 2 · A model
# `ck.models.build` knows a small zoo (`mlp`, `cnn1d`, `cnn`, `resnet18`, `vgg16`) and every torchvision classifier.
# The *prunable* layers are the convolutions and linear layers; their weights are what pruning removes.

# %%
model = ck.models.build(MODEL, data.input_shape, data.num_classes, width=WIDTH, seed=SEED)
for name, layer in prunable_layers(model):
    print(f"{name:>4}  {type(layer).__name__:<7} weight {tuple(layer.weight.shape)}")
print(f"parameters: {ck.measure.param_count(model):,}  (prunable weights: {ck.measure.prunable_count(model):,})")
phases.done("model")

# %% [markdown]
# ## 3 · Training
# The `Trainer` runs a plain loop — forward, loss, backward, Adam step — and calls *callbacks* at the end of every
# step and epoch. Later lessons plug pruning and the EarlyCroP detector in as callbacks; here there are none.

# %%
trainer = ck.train.Trainer(model, data, epochs=EPOCHS, lr=2e-3, schedule="onecycle", seed=SEED)
history = trainer.fit()
final = history.epochs[-1]
print(f"after {final['epoch']} epochs: train loss {final['train_loss']:.3f}, test accuracy {final['test_acc']:.1%}")

# %%
epochs = history.column("epoch")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(history.step_loss, alpha=0.4, label="every step")
steps_per_epoch = len(history.step_loss) // len(epochs)
ax1.plot([e * steps_per_epoch for e in epochs], history.column("train_loss"), "o-", label="epoch mean")
ax1.set(xlabel="training step", ylabel="cross-entropy loss", title="Training loss", yscale="log")
ax1.legend()
ax2.plot(epochs, history.column("train_acc"), "o-", label="train")
ax2.plot(epochs, history.column("test_acc"), "s-", label="test")
ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
ax2.legend()
fig.tight_layout()
fig.savefig(ck.paths.output_file(OUTPUT_DIR, "00_tour_learning_curve.png"), dpi=100)
plt.show()
phases.done("training")

# %% [markdown]
# ## 4 · What the network costs
# * **FLOPs** are counted by PyTorch's `FlopCounterMode` (2 per multiply-accumulate) for one sample.
# * **Batch time** is the median of several full training steps after a warm-up.
# * **Peak memory** on a CPU is the persistent state (weights, gradients, Adam's two moments) plus the peak of what
#   one step allocates, read from the PyTorch profiler; on a GPU it is `torch.cuda.max_memory_allocated`.
# * **Disk** is the size of the saved weights.

# %%
xb, yb = next(iter(data.train))
cost = {
    "params": ck.measure.param_count(model),
    "flops_per_sample": ck.measure.flops(model, xb),
    "batch_time_ms": ck.measure.batch_time(model, xb, yb),
    "peak_memory_bytes": ck.measure.peak_memory(model, xb, yb)["bytes"],
    "disk_bytes": ck.storage.disk_size(model),
}
print(f"batch of {len(xb)} on {ck.hardware.describe()}")
for key, value in cost.items():
    print(f"{key:>18}: {value:,.1f}")
phases.done("costs")

# %% [markdown]
# ## What to notice
# * The loss falls fast on digits: the network has far more parameters than 1437 small images need. That
#   over-parameterisation is what pruning exploits.
# * FLOPs and batch time are different things: FLOPs count arithmetic, batch time also pays for memory traffic,
#   kernel launches and the optimizer. Lesson 04 shows that only *structured* pruning turns FLOP savings into time.
#
# ## Try this
# * Set `MODEL = "resnet18"` and `WIDTH = 0.25`: how do parameters, FLOPs and batch time change?
# * Set `DATA = "mnist1d"` and `MODEL = "cnn1d"`: the same kit on 1-D signals.
# * Double `WIDTH`: parameters grow about 4× — does the batch time?

# %%
results = {
    "phase_seconds": phases.seconds,
    "profile": PROFILE, "data": DATA, "model": MODEL, "width": WIDTH, "epochs": EPOCHS,
    "hardware": ck.hardware.describe(),
    "final_test_acc": final["test_acc"], "first_train_loss": history.epochs[0]["train_loss"],
    "final_train_loss": final["train_loss"], "history": history.epochs, **cost,
}
print("wrote", ck.notebook.save_results(OUTPUT_DIR, "00_tour", results))
