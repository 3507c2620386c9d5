"""Callbacks that hook pruning into `cropkit.training.loop.Trainer` (the loop does not know about them), and LTR's θ_k.

One callback shape for a detector: :class:`DetectorCallback` feeds any detector with an ``update(model) -> bool``
(`cropkit.training.timing.EarlyCroPDetector`, `cropkit.training.timing.EarlyBirdDetector`) and calls
``on_fire(trainer)`` once.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cropkit.core import ntk
from cropkit.core.plumbing import plain_name
from cropkit.training.loop import Callback


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The names and shapes of ``model``'s parameters: what a prune (masks or removal) changes."""
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


class DetectorCallback(Callback):
    """Feeds a detector from ``cropkit.training.loop.Trainer``, records when it fired, and calls ``on_fire(trainer)``
    once,
    right after it fired (that is where a method prunes).

        det = DetectorCallback(EarlyCroPDetector(model), on_fire=lambda trainer: ...)
        Trainer(model, data, epochs, callbacks=[det]).fit();  det.fired_epoch

    ``every_steps=N`` updates the detector every N optimizer steps instead of every epoch (its "epochs" are
    then blocks of N steps). ``record_steps=True`` also records the squared distance from the detector's
    anchor after every step into ``step_distances`` (EarlyCroP detector only; the anchor is θ₀ for the seed
    rule, θ_ref after epoch 1 for the reference rule; one device sync per step, meant for plots).
    ``deadline=(epoch, act)`` calls ``act(trainer)`` at the end of that epoch if the detector has not fired by then
    (with ``every_steps`` the maximum dense phase stays counted in epochs).

    After firing, the detector keeps being fed (its history goes on, for plots) as long as the network keeps the
    tensors it had when the detector fired. A prune in ``on_fire`` replaces them (masks rename the weights,
    structured removal reshapes them): a detector cannot compare that network with its snapshot, so the
    watching ends there.
    """

    def __init__(self, detector, every_steps: int | None = None, record_steps: bool = False,
                 on_fire: Callable | None = None, deadline: tuple[int, Callable] | None = None):
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps must be >= 1 or None; got {every_steps}")
        if record_steps and not hasattr(detector, "squared_distance"):
            raise ValueError(f"record_steps needs an EarlyCroPDetector; got {type(detector).__name__}")
        self.detector, self.every_steps, self.record_steps = detector, every_steps, record_steps
        self.on_fire, self.deadline = on_fire, deadline
        self.step_distances: list[float] = []
        self.fired_epoch: int | None = None  # trainer epochs finished when it fired
        self.fired_step: int | None = None   # trainer steps finished when it fired
        self._watched: list | None = None    # the network's signature when it fired
        self._replaced = False

    @property
    def forced(self) -> bool:
        return self.detector.forced

    def state_dict(self) -> dict:
        return dict(detector=self.detector.state_dict(), step_distances=self.step_distances,
                    fired_epoch=self.fired_epoch, fired_step=self.fired_step, replaced=self._replaced,
                    watched=None if self._watched is None else [[n, list(shape)] for n, shape in self._watched])

    def load_state_dict(self, state: dict, trainer) -> None:
        self.detector.load_state_dict(state["detector"])
        self.step_distances = list(state["step_distances"])
        self.fired_epoch, self.fired_step, self._replaced = state["fired_epoch"], state["fired_step"], state["replaced"]
        self._watched = None if state["watched"] is None else [(n, tuple(shape)) for n, shape in state["watched"]]

    def watching(self, trainer) -> bool:
        """Whether the detector can still be fed: before it fired, or while the network is the one it watched."""
        if self._watched is not None and not self._replaced:
            self._replaced = self._watched != _signature(trainer.model)  # once replaced, never again
        return not self._replaced

    def _fire(self, trainer, act: Callable | None) -> None:
        self.fired_epoch, self.fired_step = trainer.epoch, trainer.step
        self._watched = _signature(trainer.model)
        if act is not None:
            act(trainer)

    def _update(self, trainer) -> None:
        if self.watching(trainer) and self.detector.update(trainer.model):
            self._fire(trainer, self.on_fire)

    def on_step_end(self, trainer) -> None:
        if self.record_steps and self.watching(trainer):
            self.step_distances.append(self.detector.squared_distance(trainer.model))
        if self.every_steps is not None and trainer.step % self.every_steps == 0:
            self._update(trainer)

    def on_epoch_end(self, trainer) -> None:
        if self.every_steps is None:
            self._update(trainer)
        if self.fired_epoch is None and self.deadline is not None and trainer.epoch >= self.deadline[0]:
            self._fire(trainer, self.deadline[1])


class EveryEpoch(Callback):
    """Call ``act(trainer)`` at the end of epochs 1..``until``."""

    def __init__(self, until: int, act: Callable):
        self.until, self.act = until, act

    def on_epoch_end(self, trainer) -> None:
        if trainer.epoch <= self.until:
            self.act(trainer)


class Snapshot(Callback):
    """Keeps a copy of every parameter and buffer after epoch ``epoch`` (0 = before training): LTR's θ_k."""

    def __init__(self, epoch: int):
        self.epoch, self.state = epoch, None

    def on_train_begin(self, trainer) -> None:
        if self.epoch == 0:
            self.state = state_of(trainer.model)

    def on_epoch_end(self, trainer) -> None:
        if trainer.epoch == self.epoch:
            self.state = state_of(trainer.model)

    def state_dict(self) -> dict:
        return dict(state=self.state)

    def load_state_dict(self, state: dict, trainer) -> None:
        self.state = state["state"]


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """{plain name: copy} of every parameter and buffer (masks excluded)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return {plain_name(n): t.detach().clone() for n, t in tensors if ".parametrizations." not in n or
            n.endswith(".original")}


@torch.no_grad()
def rewind(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Set every parameter and buffer to ``state``; masks stay, so pruned weights stay zero (LTR's rewinding)."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if plain_name(name) in state:
            tensor.copy_(state[plain_name(name)])


class BatchNormL1(Callback):
    """Adds the subgradient λ·sign(γ) of λ‖γ‖₁ to the gradient of every BatchNorm γ (network slimming, as used by
    EarlyBird), through gradient hooks, so the training loop stays unaware of it. ``remove()`` ends it.

    A callback only for its state: a resumed run re-registers the hooks on the restored model exactly when the
    penalty was still on (the hooks live on parameter tensors, which a restore may replace)."""

    def __init__(self, model: nn.Module, strength: float):
        self.strength = strength
        self.handles = []
        self._register(model)

    def _register(self, model: nn.Module) -> None:
        self.handles = [m.weight.register_hook(lambda g, w=m.weight: g + self.strength * torch.sign(w.detach()))
                        for m in model.modules()
                        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
        self.active = True

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.active = [], False

    def state_dict(self) -> dict:
        return dict(active=self.active)

    def load_state_dict(self, state: dict, trainer) -> None:
        self.remove()
        if state["active"]:
            self._register(trainer.model)


# ----------------------------------------------------------------------------- watching the kernel move

class KernelDrift(Callback):
    """A training callback that records how far the NTK on a fixed probe batch has moved from its start.

    Every ``every_steps`` optimizer steps (and at step 0, on train begin) it computes Θ_t on ``probe`` and
    records ``steps``, ``distance`` = kernel_distance(Θ_0, Θ_t) (a change of shape) and ``trace_ratio`` =
    tr Θ_t / tr Θ_0 (a change of scale). In the lazy regime both settle (Jacot et al. 2018; Fort et al. 2020).
    The kernel is computed in eval mode (module doc); training mode is restored.
    """

    def __init__(self, probe: torch.Tensor, every_steps: int = 10, params: str = "all"):
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1; got {every_steps}")
        self.probe, self.every_steps, self.params = probe, every_steps, params
        self.initial: torch.Tensor | None = None
        self.steps: list[int] = []
        self.distance: list[float] = []
        self.trace_ratio: list[float] = []

    def _record(self, trainer) -> None:
        kernel = ntk.empirical_ntk(trainer.model, self.probe.to(trainer.device), self.params)
        if self.initial is None:
            self.initial = kernel
        self.steps.append(trainer.step)
        self.distance.append(ntk.kernel_distance(self.initial, kernel))
        self.trace_ratio.append(float(kernel.trace() / self.initial.trace()))

    def on_train_begin(self, trainer) -> None:
        if self.initial is None:
            self._record(trainer)

    def on_step_end(self, trainer) -> None:
        if trainer.step % self.every_steps == 0:
            self._record(trainer)
