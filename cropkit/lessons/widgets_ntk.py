"""Interactive views for the NTK lessons (notebooks 01 and 02): kernel heatmaps before/after pruning and a τ slider.

The widgets only *display*; the work is done by plain functions (:func:`pruned_copy`, :class:`NTKExplorer.figure`,
:func:`detector_figure`) that tests and scripts can call without a browser. ipywidgets swallows exceptions raised
in callbacks, so every callback here is installed with `cropkit.lessons.widgets.safe_observe`: an exception is recorded,
shown in the widget's output area and re-raised (the kit's one widget error policy).
"""
from __future__ import annotations

import copy
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from cropkit.core import ntk, prune
from cropkit.lessons.widgets import safe_observe
from cropkit.training import timing


def pruned_copy(model: nn.Module, scores: dict[str, Tensor], sparsity: float) -> nn.Module:
    """A deep copy of ``model`` pruned (unstructured, global top-k of ``scores``) to weight sparsity ``sparsity``."""

    pruned = copy.deepcopy(model)
    if sparsity > 0:
        prune.unstructured(pruned, scores, sparsity)
    return pruned


def plot_kernels(before: Tensor, after: Tensor, title: str = "", classes: int | None = None):
    """Heatmaps of two NTKs, each on its own symmetric colour scale, and the change of their *shape*,
    Θ'/‖Θ'‖ − Θ/‖Θ‖ (Frobenius norms): the quantity the kernel distance summarises. Returns the figure."""
    before, after = before.detach().double().cpu(), after.detach().double().cpu()
    shape_change = after / torch.linalg.matrix_norm(after) - before / torch.linalg.matrix_norm(before)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), constrained_layout=True)
    panels = [(before, "dense NTK Θ"), (after, "pruned NTK Θ' (own colour scale)"),
              (shape_change, "shape change Θ'/‖Θ'‖ − Θ/‖Θ‖")]
    for ax, (kernel, name) in zip(axes, panels):
        scale = float(kernel.abs().max()) or 1.0
        image = ax.imshow(kernel, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(name)
        ax.set_xlabel("sample · class (sample-major)")
        fig.colorbar(image, ax=ax, shrink=0.8)
        if classes:  # grid lines between samples make the C × C blocks visible
            for edge in range(classes, kernel.shape[0], classes):
                ax.axhline(edge - 0.5, color="k", lw=0.2)
                ax.axvline(edge - 0.5, color="k", lw=0.2)
    axes[0].set_ylabel("sample · class")
    fig.suptitle(title)
    return fig


class NTKExplorer:
    """Criterion dropdown × sparsity slider → NTK heatmaps before/after pruning on a probe batch.

    ``scores``: {criterion: per-weight scores of ``model``} (computed once; one-shot pruning at init only
    needs the ranking, so every sparsity reuses them). Kernels are cached per (criterion, sparsity).
    """

    def __init__(self, model: nn.Module, scores: dict[str, dict[str, Tensor]], probe: Tensor,
                 sparsities: Sequence[float], params: str = "prunable", classes: int | None = None):
        if not scores:
            raise ValueError("NTKExplorer needs scores for at least one criterion")
        self.model, self.scores, self.probe = model, scores, probe
        self.sparsities, self.params, self.classes = list(sparsities), params, classes
        self.dense = ntk.empirical_ntk(model, probe, params)
        self._cache: dict[tuple[str, float], Tensor] = {}

    def kernel(self, criterion: str, sparsity: float) -> Tensor:
        key = (criterion, float(sparsity))
        if key not in self._cache:
            if criterion not in self.scores:
                raise ValueError(f"unknown criterion {criterion!r}; scored ones are {list(self.scores)}")
            pruned = pruned_copy(self.model, self.scores[criterion], sparsity)
            self._cache[key] = ntk.empirical_ntk(pruned, self.probe, self.params)
        return self._cache[key]

    def figure(self, criterion: str, sparsity: float):
        after = self.kernel(criterion, sparsity)
        distance = ntk.kernel_distance(self.dense, after)
        scale = float(after.trace() / self.dense.trace())
        title = (f"{criterion} at weight sparsity {sparsity:.2f}: kernel distance {distance:.3f}, "
                 f"trace ratio {scale:.3f}")
        return plot_kernels(self.dense, after, title, self.classes)

    def widget(self, criterion: str | None = None, sparsity: float | None = None):
        """The interactive view (an ipywidgets box), drawn once for the initial choice."""
        import ipywidgets as w
        from IPython.display import display

        criterion = criterion or next(iter(self.scores))
        sparsity = self.sparsities[len(self.sparsities) // 2] if sparsity is None else sparsity
        dropdown = w.Dropdown(options=list(self.scores), value=criterion, description="criterion")
        slider = w.SelectionSlider(options=self.sparsities, value=sparsity, description="sparsity",
                                   continuous_update=False)
        output = w.Output()

        def draw(_=None):
            output.clear_output(wait=True)
            with output:
                fig = self.figure(dropdown.value, slider.value)
                display(fig)
                plt.close(fig)

        safe_observe(dropdown, draw, output=output)
        safe_observe(slider, draw, output=output)(None)  # the first drawing, under the same policy
        return w.VBox([w.HBox([dropdown, slider]), output])


# ----------------------------------------------------------------------------- notebook 02: the τ slider

def detector_figure(history: Sequence[float], threshold: float, rule: str = "seed", ax=None):
    """The detector's ratio r_t against τ on a recorded trajectory, with the epoch it would fire at."""
    epochs, values = timing.ratios(history, rule)
    fired = timing.detection_epoch(history, threshold, rule)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    ax.semilogy(epochs, values, "o-", label="ratio r_t")
    ax.axhline(threshold, color="tab:red", ls="--", label=f"τ = {threshold:g}")
    if fired is not None:
        ax.axvline(fired, color="tab:green", label=f"fires at epoch {fired}")
    ax.set_xlabel("epoch t")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("|Δ_t − Δ_{t−1}| / Δ_1" if rule == "seed" else "|d_t − d_{t−1}| / d_2")
    ax.set_title(f"{rule} rule: fires at epoch {fired}" if fired else f"{rule} rule: does not fire")
    ax.legend()
    return ax.figure


def tau_slider(history: Sequence[float], rule: str = "seed", values: Sequence[float] | None = None,
               value: float = timing.DEFAULT_THRESHOLD):
    """A τ slider over a recorded trajectory: the plot and the detection epoch follow τ."""
    import ipywidgets as w
    from IPython.display import display

    values = list(values or [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5])
    slider = w.SelectionSlider(options=values, value=value if value in values else values[0], description="τ",
                               continuous_update=False)
    output = w.Output()

    def draw(_=None):
        output.clear_output(wait=True)
        with output:
            fig = detector_figure(history, slider.value, rule)
            display(fig)
            plt.close(fig)

    safe_observe(slider, draw, output=output)(None)  # installed, then the first drawing
    return w.VBox([slider, output])


# ----------------------------------------------------------------------------- notebook 02: the animation

def rich_to_lazy_animation(step_distances: Sequence[float], steps_per_epoch: int, threshold: float,
                           drift_steps: Sequence[int] = (), drift: Sequence[float] = (), frames: int = 60,
                           interval_ms: int = 120, dpi: int = 80):
    """Animate one training run: Δ = ‖θ − θ₀‖² per step, the seed detector's ratio against τ, the NTK drift.

    ``step_distances[s]`` is Δ after step s + 1; epoch t ends at step t · ``steps_per_epoch``, where the
    detector reads Δ_t. Frames advance through the steps; the firing epoch (seed rule) is marked when reached.
    Returns a ``matplotlib.animation.FuncAnimation`` (embed with ``to_jshtml()``, save with ``PillowWriter``).
    """
    from matplotlib.animation import FuncAnimation

    n_steps = len(step_distances)
    if n_steps < steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"need at least one epoch of steps ({steps_per_epoch}); got {n_steps}")
    epochs = n_steps // steps_per_epoch
    history = [step_distances[t * steps_per_epoch - 1] for t in range(1, epochs + 1)]  # Δ_t at epoch ends
    ratio_epochs, ratio_values = timing.ratios(history, "seed")
    fired = timing.detection_epoch(history, threshold, "seed")
    steps = list(range(1, n_steps + 1))

    # a fixed layout (not constrained_layout) so that each frame is only drawn, not laid out again
    fig, (ax_d, ax_r, ax_k) = plt.subplots(1, 3, figsize=(13, 3.8), dpi=dpi)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    ax_d.set(xlim=(0, n_steps), ylim=(0, max(step_distances) * 1.05), xlabel="optimizer step",
             ylabel="Δ = ‖θ − θ₀‖²", title="distance travelled from θ₀")
    ax_r.set(xlim=(1, max(epochs, 2) + 0.5), xlabel="epoch t", ylabel="|Δ_t − Δ_{t−1}| / Δ_1",
             title=f"seed detector vs τ = {threshold:g}")
    ax_r.set_yscale("log")
    positive = [r for r in ratio_values if r > 0] or [threshold]
    ax_r.set_ylim(min(min(positive), threshold) / 2, max(max(positive), threshold) * 2)
    ax_r.axhline(threshold, color="tab:red", ls="--", label="τ")
    ax_k.set(xlim=(0, n_steps), ylim=(0, max(list(drift) + [1e-3]) * 1.1), xlabel="optimizer step",
             ylabel="1 − cos(Θ₀, Θ_t)", title="NTK drift on a probe batch")
    line_d, = ax_d.plot([], [], color="tab:blue")
    dots_d, = ax_d.plot([], [], "o", color="tab:blue", ms=4, label="Δ_t (epoch ends)")
    line_r, = ax_r.plot([], [], "o-", color="tab:purple", label="ratio")
    line_k, = ax_k.plot([], [], color="tab:orange")
    markers = []
    ax_d.legend(loc="lower right")
    ax_r.legend(loc="upper right")

    def draw(frame):
        s = max(1, round((frame + 1) * n_steps / frames))  # steps shown in this frame
        t = s // steps_per_epoch                            # finished epochs
        line_d.set_data(steps[:s], step_distances[:s])
        dots_d.set_data([e * steps_per_epoch for e in range(1, t + 1)], history[:t])
        shown = [(e, r) for e, r in zip(ratio_epochs, ratio_values) if e <= t]
        line_r.set_data([e for e, _ in shown], [r for _, r in shown])
        k = [(st, d) for st, d in zip(drift_steps, drift) if st <= s]
        line_k.set_data([st for st, _ in k], [d for _, d in k])
        if fired is not None and t >= fired and not markers:  # the moment it fires, drawn once
            for ax, x in ((ax_d, fired * steps_per_epoch), (ax_r, fired), (ax_k, fired * steps_per_epoch)):
                markers.append(ax.axvline(x, color="tab:green", lw=1.5))
            ax_r.set_title(f"seed detector fires at epoch {fired}", color="tab:green")
        return line_d, dots_d, line_r, line_k, *markers

    return FuncAnimation(fig, draw, frames=frames, interval=interval_ms, blit=False)
