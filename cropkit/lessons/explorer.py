"""The structured explorer of lesson 04: a plain class that tests drive by setting ``.value``.

    explorer = StructuredExplorer(width=0.25)
    explorer.update()                 # compute and draw the current choice once (also what papermill shows)
    display(explorer.widget)          # model / criterion / budget dropdowns, sparsity slider, the Output
    explorer.sparsity.value = 0.9     # a test (or a learner) moves the slider …
    explorer.last["params_ratio"]     # … and reads what was shown

**What the structured explorer computes** for a (model, criterion, budget, sparsity) choice: node scores of the
dense model at initialisation (``cropkit.core.scores.NODE_SCORES[criterion]`` on the scoring batches; cached per model
and criterion, so only the first visit of a criterion pays for scoring), then ``cropkit.core.prune.structured`` on a
copy of the dense model, and for the physically smaller result: kept nodes per layer, parameters, FLOPs per
sample, the median time of a full training step and the peak memory of one, each divided by the dense model's
(measured once per model, on the same batch and hardware).

Its callbacks follow the kit's one widget error policy, `cropkit.lessons.widgets.safe_observe`.
"""
from __future__ import annotations

import base64
import copy
import io
import time
from typing import Iterable

import torch

from cropkit.core import hardware, measure, prune, scores
from cropkit.core.plumbing import torch_threads
from cropkit.lessons.widgets import safe_observe
from cropkit.tasks import models
from cropkit.training import loop as train


def _png_output(fig, dpi: int = 80) -> dict:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": f"<Figure {fig.get_figwidth():.0f}×{fig.get_figheight():.0f} in>"}}


def _html_output(html: str, text: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/html": html, "text/plain": text}}


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.2f} MB"


# (measured key, its ratio-to-dense key, label, number format; None = megabytes)
RATIOS = (("params", "params_ratio", "params", "{:,.0f}"),
          ("flops", "flops_ratio", "FLOPs / sample", "{:,.0f}"),
          ("batch_time_ms", "batch_time_ratio", "batch time (ms)", "{:,.1f}"),
          ("peak_memory_bytes", "peak_memory_ratio", "peak memory", None))


# ----------------------------------------------------------------------------- drawing a state

def summary_text(state: dict) -> str:
    """One line of ratios to dense, e.g. ``params 0.10× · FLOPs 0.21× · …``."""
    return (f"ratio to dense: params {state['params_ratio']:.3f}× · FLOPs {state['flops_ratio']:.3f}× · "
            f"batch time {state['batch_time_ratio']:.2f}× · peak memory {state['peak_memory_ratio']:.3f}×")

def summary_output(state: dict) -> dict:
    """The summary as an HTML display output: dense, pruned and their ratio for each cost."""
    rows = []
    for key, ratio, label, fmt in RATIOS:
        show = _mb if fmt is None else fmt.format
        rows.append(f"<tr><td>{label}</td><td>{show(state[f'{key}_dense'])}</td><td>{show(state[key])}</td>"
                    f"<td><b>{state[ratio]:.3f}×</b></td></tr>")
    head = (f"{state['model']} (width {state['width']}) · {state['criterion']} · {state['budget']} budget "
            f"{state['target_sparsity']:.2f} → weight sparsity {state['weight_sparsity']:.3f}, "
            f"node sparsity {state['node_sparsity']:.3f}")
    html = (f"<div class='cropkit-explorer-summary'><p>{head}</p>"
            f"<table><tr><th></th><th>dense</th><th>pruned</th><th>ratio</th></tr>{''.join(rows)}</table>"
            f"<p>{summary_text(state)}</p><p><small>training step of {state['batch_size']} samples on "
            f"{state['hardware']}</small></p></div>")
    return _html_output(html, f"{head}\n{summary_text(state)}")

def figure(state: dict):
    """Kept vs dense nodes per layer (left) and the four cost ratios (right); a closed matplotlib Figure."""
    from matplotlib.figure import Figure  # not pyplot: nothing is shown twice by the inline backend

    names = list(state["layers"])
    kept = [state["layers"][n][0] for n in names]
    dense = [state["layers"][n][1] for n in names]
    fig = Figure(figsize=(11, 3.6))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    positions = range(len(names))
    ax.bar(positions, dense, color="#d0d7e1", label="dense")
    ax.bar(positions, kept, color="#2b6cb0", label="kept")
    ax.set_xticks(list(positions), names, rotation=70, fontsize=7)
    ax.set(ylabel="nodes (output channels)",
           title=f"{state['model']}: kept nodes per layer ({state['criterion']}, "
                 f"node sparsity {state['node_sparsity']:.0%})")
    ax.legend(fontsize=8)
    labels = ["params", "FLOPs", "batch\ntime", "peak\nmemory"]
    ratios = [state["params_ratio"], state["flops_ratio"], state["batch_time_ratio"], state["peak_memory_ratio"]]
    bx.bar(labels, ratios, color=["#2b6cb0", "#2f855a", "#c05621", "#6b46c1"])
    bx.axhline(1.0, color="black", lw=0.8, ls="--")
    for i, r in enumerate(ratios):
        bx.text(i, r, f"{r:.2f}", ha="center", va="bottom", fontsize=8)
    bx.set(title="pruned ÷ dense", ylim=(0, max(1.15, max(ratios) * 1.15)))
    bx.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


class StructuredExplorer:
    """Model / criterion / budget dropdowns and a sparsity slider over structured pruning at initialisation.

    Arguments
        model_names   zoo or torchvision names for the model dropdown
        criteria      node criteria for the criterion dropdown: keys of ``cropkit.core.scores.NODE_SCORES`` (default
        all)
        width         width multiplier of the models (0.25–0.5 keeps a slider move near a second on a CPU)
        input_shape, num_classes   what the models are built for
        batches       scoring batches ``[(inputs, targets), ...]`` from the training set; ``None`` = one seeded
                      batch of random inputs and labels of ``input_shape`` (the explorer is about the *shape*
                      of the pruned network and its cost, not its accuracy)
        batch_size    inputs per measured training step (batch time and peak memory)
        sparsity      initial target (its meaning follows the budget: weight, node or FLOP sparsity)
        budget        initial budget, one of ``cropkit.core.prune.BUDGETS``
        model, criterion   initial choices (default: the first of ``model_names`` / ``criteria``)
        repeats       timed training steps per measurement (median), after one warm-up step
        seed, device  model initialisation seed; where models run (default: CUDA if present)
        threads       torch CPU threads while computing (``None`` = leave as set). One thread gives steadier
                      timings on a machine shared with other jobs, where extra threads wait on each other

    ``.widget`` is the box to display; ``.update()`` computes and draws the current choice and returns ``.last``,
    a dict of everything shown. ``.errors`` records exceptions raised by the callbacks (see :func:`safe_observe`).
    """

    def __init__(self, model_names: Iterable[str] = ("resnet18", "vgg16"), criteria: Iterable[str] | None = None,
                 width: float = 0.25, input_shape=(3, 32, 32), num_classes: int = 10, batches=None,
                 batch_size: int = 8, sparsity: float = 0.5, budget: str = "weights", repeats: int = 3,
                 seed: int = 0, device=None, threads: int | None = None, model: str | None = None,
                 criterion: str | None = None):

        self.model_names = tuple(model_names)
        self.criteria = tuple(scores.NODE_SCORES if criteria is None else criteria)
        model = self.model_names[0] if model is None and self.model_names else model
        criterion = self.criteria[0] if criterion is None and self.criteria else criterion
        self._check_choices(model, criterion, budget)
        self.width, self.input_shape, self.num_classes = width, tuple(input_shape), num_classes
        self.batch_size, self.repeats, self.seed, self.threads = batch_size, repeats, seed, threads
        self.device = train.resolve_device(device)
        self.synthetic = batches is None
        self.batches = self._scoring_batches(batches)
        x, y = self.batches[0]
        self._x, self._y = x[:batch_size], y[:batch_size]  # the measured training step
        self._dense: dict[str, dict] = {}  # model name → {"model": dense model, **its costs}
        self._scores: dict[tuple[str, str], dict] = {}  # (model, criterion) → node scores of the dense model
        self.errors: list[BaseException] = []
        self.last: dict = {}
        self.widget = self._controls(model, criterion, budget, sparsity)

    def _check_choices(self, model: str, criterion: str, budget: str) -> None:

        unknown = [c for c in self.criteria if c not in scores.NODE_SCORES]
        if unknown or not self.criteria:
            raise ValueError(f"criteria must be keys of cropkit.scores.NODE_SCORES {list(scores.NODE_SCORES)}; "
                             f"got {list(self.criteria)}")
        if not self.model_names:
            raise ValueError("model_names is empty; give at least one model name, e.g. ('resnet18', 'vgg16')")
        if model not in self.model_names or criterion not in self.criteria:
            raise ValueError(f"the initial model and criterion must be among {list(self.model_names)} and "
                             f"{list(self.criteria)}; got {model!r}, {criterion!r}")
        if budget not in prune.BUDGETS:
            raise ValueError(f"budget must be one of {list(prune.BUDGETS)}; got {budget!r}")

    def _scoring_batches(self, batches) -> list:
        """The given batches on the explorer's device, or one seeded random batch when none are given."""
        if batches is None:
            generator = torch.Generator().manual_seed(self.seed)
            batches = [(torch.randn(self.batch_size, *self.input_shape, generator=generator),
                        torch.randint(0, self.num_classes, (self.batch_size,), generator=generator))]
        batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        if not batches:
            raise ValueError("batches is empty; pass at least one (inputs, targets) batch, or None for a random one")
        return batches

    def _controls(self, model: str, criterion: str, budget: str, sparsity: float):
        """The dropdowns, the slider, the status line and the output area, each control wired to ``update``."""
        import ipywidgets as W


        style = {"description_width": "70px"}
        self.model = W.Dropdown(options=self.model_names, value=model, description="model", style=style)
        self.criterion = W.Dropdown(options=self.criteria, value=criterion, description="criterion", style=style)
        self.budget = W.Dropdown(options=prune.BUDGETS, value=budget, description="budget", style=style)
        self.sparsity = W.FloatSlider(value=sparsity, min=0.0, max=0.98, step=0.02, description="sparsity",
                                      readout_format=".2f", continuous_update=False, style=style,
                                      layout=W.Layout(width="420px"))
        self.status = W.HTML(value="")
        self.output = W.Output(layout=W.Layout(min_height="320px"))
        controls = W.HBox([W.VBox([self.model, self.criterion]), W.VBox([self.budget, self.sparsity])])
        box = W.VBox([controls, self.status, self.output])
        box.add_class("cropkit-explorer")
        for control in (self.model, self.criterion, self.budget, self.sparsity):
            safe_observe(control, lambda change: self.update(), output=self.output, errors=self.errors)
        return box

    # ---------------------------------------------------------------- cached pieces

    def dense(self, name: str) -> dict:
        """The dense model ``name`` (seeded) and its costs, built and measured once."""
        if name not in self._dense:

            model = models.build(name, self.input_shape, self.num_classes, width=self.width, seed=self.seed)
            model = model.to(self.device)
            self._dense[name] = {"model": model, **self._costs(model)}
            self._dense[name]["nodes"] = measure.node_counts(model)
        return self._dense[name]

    def node_scores(self, name: str, criterion: str) -> dict[str, torch.Tensor]:
        """Node scores of the dense model by ``criterion`` on the scoring batches, computed once."""
        key = (name, criterion)
        if key not in self._scores:

            self._scores[key] = scores.NODE_SCORES[criterion](self.dense(name)["model"], self.batches,
                                                              seed=self.seed)
        return self._scores[key]

    def _costs(self, model) -> dict:

        return {"params": measure.param_count(model),
                "flops": measure.flops(model, self._x[:1]),
                "batch_time_ms": measure.batch_time(model, self._x, self._y, warmup=1, repeats=self.repeats),
                "peak_memory_bytes": measure.peak_memory(model, self._x, self._y)["bytes"]}

    # ---------------------------------------------------------------- the update

    def compute(self, name: str, criterion: str, sparsity: float, budget: str = "weights") -> dict:
        """Prune a copy of the dense ``name`` by ``criterion`` to ``sparsity`` under ``budget``; measure it."""
        import warnings


        start = time.perf_counter()
        with torch_threads(self.threads):
            dense = self.dense(name)
            node_scores = self.node_scores(name, criterion)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                small = prune.structured(copy.deepcopy(dense["model"]), node_scores, sparsity, self._x[:1],
                                         budget=budget)
            costs = self._costs(small)
            machine = hardware.describe()  # inside the block: it names the thread count the timing used
        state = {"model": name, "criterion": criterion, "budget": budget, "target_sparsity": float(sparsity),
                 "width": self.width, "input_shape": list(self.input_shape), "synthetic_batches": self.synthetic,
                 "weight_sparsity": measure.weight_sparsity(small, dense["model"]),
                 "node_sparsity": measure.node_sparsity(small, dense["model"]),
                 "layers": {layer: list(kd) for layer, kd in measure.kept_nodes(small, dense["model"]).items()},
                 "hardware": machine, "batch_size": len(self._x),
                 "warnings": [str(w.message) for w in caught]}
        for key, ratio, *_ in RATIOS:
            state[key], state[f"{key}_dense"], state[ratio] = costs[key], dense[key], costs[key] / dense[key]
        state["seconds"] = time.perf_counter() - start
        return state

    def update(self) -> dict:
        """Compute the current choice, draw it into ``.output`` and return (and keep) it as ``.last``."""
        first = (self.model.value, self.criterion.value) not in self._scores
        self.status.value = ("<i>computing… (scoring the dense model: once per model and criterion)</i>" if first
                             else "<i>computing…</i>")
        try:
            state = self.compute(self.model.value, self.criterion.value, self.sparsity.value, self.budget.value)
        except Exception as err:
            self.status.value = f"<b>failed</b> ({type(err).__name__}): the traceback is below"
            raise
        self.last = state
        self.output.outputs = (self.summary_output(state), _png_output(self.figure(state)))
        self.status.value = f"updated in {state['seconds']:.1f} s on {state['hardware']}"
        return state

    # ---------------------------------------------------------------- drawing (the module's functions)

    summary_text = staticmethod(summary_text)
    summary_output = staticmethod(summary_output)
    figure = staticmethod(figure)

    def sweep(self, name: str, criterion: str, sparsities: Iterable[float], budget: str = "weights") -> list[dict]:
        """``compute`` at several sparsities (for a static plot of the ratios against sparsity)."""
        return [self.compute(name, criterion, s, budget) for s in sparsities]
