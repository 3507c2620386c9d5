"""When to prune: the EarlyCroP detector (rich → lazy transition) and the EarlyBird mask-distance detector.

Both are fed once per epoch with ``update(model)`` and answer True at the epoch they fire (once; later
updates keep recording and answer False). `cropkit.training.callbacks.DetectorCallback` (importable from here too) plugs
either into ``cropkit.training.loop.Trainer``; it records when the detector fired and calls an optional ``on_fire``
hook,
but never prunes by itself — pruning is a method's business (``cropkit.methods.registry``).

EarlyCroP (Rachwan et al. 2022, §3.3): early in training the weights travel far (the *rich* regime); later
the NTK settles and the weights move at a steady, slow pace (the *lazy* regime), so pruning then loses
little. The seed's detector watches the squared distance travelled from initialisation,

    Δ_t = ‖θ_t − θ₀‖²   over all trainable parameters, at the end of epoch t,

and fires at the first t ≥ 2 with |Δ_t − Δ_{t−1}| / |Δ_1| < τ (default τ = 0.1).
"""
from __future__ import annotations

import collections
import math
import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from cropkit.core.plumbing import plain_name

DEFAULT_THRESHOLD = 0.1  # τ of the seed rule; notebook 02 shows how the detection epoch moves with it
RULES = ("seed", "reference")
# The epoch whose value normalises the ratio: Δ_1 for the seed rule, d_2 for the reference rule (d_1 = 0).
_BASE_EPOCH = {"seed": 1, "reference": 2}


# ----------------------------------------------------------------------------- pure functions over a trajectory

def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown detector rule {rule!r}; choose one of {RULES}")


def ratios(history: Sequence[float], rule: str = "seed") -> tuple[list[int], list[float]]:
    """The detector's ratios over a recorded trajectory: (epochs t, values r_t).

    ``history[i]`` is the distance measured at the end of epoch i + 1. With b the base epoch
    (b = 1 for the seed rule, b = 2 for the reference rule):

        r_t = |h_t − h_{t−1}| / |h_b|      for t = b + 1, …, len(history)

    A zero normaliser (the weights did not move at all) gives r = 0 if h did not change either, else ∞.
    """
    _check_rule(rule)
    base = _BASE_EPOCH[rule]
    if len(history) < base:
        return [], []
    norm = abs(history[base - 1])
    epochs, values = [], []
    for t in range(base + 1, len(history) + 1):
        change = abs(history[t - 1] - history[t - 2])
        values.append(change / norm if norm > 0 else (0.0 if change == 0 else math.inf))
        epochs.append(t)
    return epochs, values


def detection_epoch(history: Sequence[float], threshold: float, rule: str = "seed") -> int | None:
    """First epoch t at which the rule fires on a recorded trajectory (None if it never does).

    Seed rule: first t ≥ 2 with |Δ_t − Δ_{t−1}| / |Δ_1| < τ, ``history`` = Δ_1, Δ_2, …
    Reference rule: first t ≥ 3 with |d_t − d_{t−1}| / d_2 < τ = 1 − p, ``history`` = d_1 = 0, d_2, …
    The maximum dense phase is not applied here (see :class:`EarlyCroPDetector`).
    """
    for t, r in zip(*ratios(history, rule)):
        if r < threshold:
            return t
    return None


# ----------------------------------------------------------------------------- parameters and distances

def _trainable(model: nn.Module) -> dict[str, Tensor]:
    params = {plain_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to watch")
    return params


def _squared_norm(tensors: Sequence[Tensor]) -> Tensor:
    """Σ ‖v‖² as a 0-dim float64 tensor on the tensors' device (no host transfer, no sync)."""
    return torch.stack([torch.linalg.vector_norm(v.detach(), dtype=torch.float64) for v in tensors]).pow(2).sum()


def _squared_distance(params: Sequence[Tensor], anchor: Sequence[Tensor]) -> Tensor:
    """Σ ‖p − p₀‖², on device."""
    return _squared_norm([p.detach() - p0 for p, p0 in zip(params, anchor)])


def reference_threshold(sparsity: float, structured: bool = False) -> float:
    """τ / d₂ of the reference code's rule for target sparsity p: 1 − p for unstructured EarlyCroP, and
    min(1 − p − 0.1, 0.99) for structured EarlyCroP (the authors' code). For structured p >= 0.9 this is <= 0:
    the ratio is never below it, so the detector never fires and the maximum dense phase decides."""
    return min(1 - sparsity - 0.1, 0.99) if structured else 1 - sparsity


class EarlyCroPDetector:
    """Detects the rich → lazy transition from the distance the weights travelled.

    ``rule="seed"`` (default; the paper's §3.3 in the seed's form): Δ_t = ‖θ_t − θ₀‖² with θ₀ snapshotted at
    construction; fires at the first t ≥ 2 with |Δ_t − Δ_{t−1}| / |Δ_1| < τ, τ = ``threshold`` (default 0.1).
    ``history`` holds Δ_t.

    ``rule="reference"`` (the EarlyCroP reference code's variant): θ_ref = θ_1 is snapshotted at the first
    update (end of epoch 1) and

        d_t = ‖θ_t − θ_ref‖ / ‖θ_ref‖        (relative, un-squared; d_1 = 0),   τ_ref = d_2 · (1 − p).

    We read the reference code's test as a test on the epoch-to-epoch change of d: it fires at the first
    t ≥ 3 with |d_t − d_{t−1}| < τ_ref, i.e. |d_t − d_{t−1}| / d_2 < 1 − p — the seed's test applied to the
    relative un-squared distance from θ_1, with τ = 1 − p for target sparsity p (``structured=True``: τ =
    min(1 − p − 0.1, 0.99), the authors' rule for structured EarlyCroP, see `reference_threshold`).
    (d_t itself keeps growing, so a test "d_t < τ_ref < d_2" would practically never fire.) Give
    ``sparsity=p``, or ``threshold`` to set 1 − p directly. ``history`` holds d_t.

    ``ratios`` holds the rule's ratio r_t for the epochs in ``ratio_epochs`` (t ≥ 2, resp. t ≥ 3).
    ``max_epochs``: the maximum dense phase; if the rule has not fired by then, the detector fires at
    t = max_epochs with a warning, ``forced = True`` and the warning's text in ``forced_reason``.

    Cost: θ₀ (resp. θ_ref) is one detached clone of the trainable parameters on their own device; an update
    is a handful of on-device reductions and a single ``.item()``.
    """

    def __init__(self, model: nn.Module, threshold: float | None = None, rule: str = "seed",
                 sparsity: float | None = None, max_epochs: int | None = None, structured: bool = False):
        _check_rule(rule)
        self.rule = rule
        self.threshold = self._threshold(rule, threshold, sparsity, structured)
        if self.threshold <= 0:
            warnings.warn(f"EarlyCroP reference rule for structured pruning at p = {sparsity}: τ = "
                          f"min(1 − p − 0.1, 0.99) = {self.threshold:.3g} <= 0, so the detector never fires; the "
                          f"maximum dense phase ({max_epochs} epochs) decides", stacklevel=2)
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs (the maximum dense phase) must be >= 1 or None; got {max_epochs}")
        self.max_epochs = max_epochs
        self.anchor = {n: p.detach().clone() for n, p in _trainable(model).items()}  # θ₀, on the model's device
        self.history: list[float] = []
        self.ratios: list[float] = []
        self.ratio_epochs: list[int] = []
        self.fired_at: int | None = None
        self.forced, self.forced_reason = False, None
        self._anchor_norm: float | None = None  # ‖θ_ref‖ for the reference rule

    @staticmethod
    def _threshold(rule: str, threshold: float | None, sparsity: float | None, structured: bool = False) -> float:
        if sparsity is not None and not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1); got {sparsity}")
        if rule == "seed":
            if sparsity is not None:
                raise ValueError("the seed rule's τ does not depend on sparsity; pass threshold=τ instead")
            threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        else:
            if (threshold is None) == (sparsity is None):
                raise ValueError("the reference rule needs exactly one of sparsity=p (τ = 1 − p) or threshold")
            if sparsity is not None:
                return reference_threshold(sparsity, structured)  # may be <= 0 for structured p >= 0.9
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0; got {threshold}")
        return float(threshold)

    @property
    def epoch(self) -> int:
        """Updates seen so far (= epochs since construction when called once per epoch)."""
        return len(self.history)

    def _params(self, model: nn.Module) -> list[Tensor]:
        params = _trainable(model)
        same = params.keys() == self.anchor.keys() and all(
            params[n].shape == a.shape for n, a in self.anchor.items())
        if not same:
            raise ValueError("the model's trainable parameters changed names or shapes since the detector "
                             "snapshotted them (structured pruning?); build a new detector for the new model")
        return [params[n] for n in self.anchor]

    def squared_distance(self, model: nn.Module) -> float:
        """‖θ − anchor‖², the anchor being θ₀ (or θ_ref once the reference rule has taken it)."""
        return _squared_distance(self._params(model), list(self.anchor.values())).item()

    def _measure(self, model: nn.Module) -> float:
        """The rule's distance at the end of this epoch: Δ_t (seed) or d_t (reference)."""
        params = self._params(model)
        if self.rule == "seed":
            return _squared_distance(params, list(self.anchor.values())).item()
        if self._anchor_norm is None:  # end of epoch 1: θ_ref = θ_1, hence d_1 = 0
            self.anchor = {n: p.detach().clone() for n, p in zip(self.anchor, params)}
            self._anchor_norm = math.sqrt(_squared_norm(params).item())
            return 0.0
        distance = _squared_distance(params, list(self.anchor.values())).sqrt().item()
        return distance / self._anchor_norm if self._anchor_norm > 0 else math.inf

    _STATE = ("anchor", "history", "ratios", "ratio_epochs", "fired_at", "forced", "forced_reason", "_anchor_norm")

    def state_dict(self) -> dict:
        """θ₀ (or θ_ref), the trajectory and the verdict: what a resumed run needs (`cropkit.training.checkpoint`)."""
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.anchor.values())).device
        for k in self._STATE:
            setattr(self, k, state[k])
        self.anchor = {n: a.to(device) for n, a in state["anchor"].items()}

    def force(self, reason: str) -> None:
        """The prune happens at the cap, not because the rule fired: ``forced``, ``forced_reason`` and a warning."""
        self.forced, self.forced_reason = True, reason
        warnings.warn(reason, stacklevel=3)

    def update(self, model: nn.Module) -> bool:
        """Record this epoch's distance; True exactly once, at the epoch the detector fires."""
        self.history.append(self._measure(model))
        t = self.epoch
        self.ratio_epochs, self.ratios = ratios(self.history, self.rule)
        if self.fired_at is not None:
            return False
        if self.ratio_epochs and self.ratio_epochs[-1] == t and self.ratios[-1] < self.threshold:
            self.fired_at = t
            return True
        if self.max_epochs is not None and t >= self.max_epochs:
            self.fired_at = t
            self.force(f"EarlyCroP detector ({self.rule} rule, τ = {self.threshold:g}) did not fire within the "
                       f"maximum dense phase of {self.max_epochs} epochs; pruning now (forced)")
            return True
        return False


# ----------------------------------------------------------------------------- EarlyBird

def bn_channel_mask(model: nn.Module, ratio: float) -> Tensor:
    """Channel mask of pruning ratio ``ratio`` from |γ| of every BatchNorm layer, one global threshold.

    You et al. 2020 ("Drawing Early-Bird Tickets"): concatenate |γ| over all BN layers, remove the fraction
    ``ratio`` with the smallest values. Returns a bool vector over all BN channels (True = kept); ties are
    broken by position so that the mask is deterministic.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio (fraction of BN channels removed) must be in [0, 1); got {ratio}")
    gammas = [m.weight.detach().abs().flatten() for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not gammas:
        raise ValueError(f"EarlyBird needs BatchNorm layers with affine γ; {type(model).__name__} has none")
    gamma = torch.cat(gammas)
    keep = gamma.numel() - int(round(ratio * gamma.numel()))
    order = torch.argsort(gamma, descending=True, stable=True)
    mask = torch.zeros_like(gamma, dtype=torch.bool)
    mask[order[:keep]] = True
    return mask


def hamming(a: Tensor, b: Tensor) -> float:
    """Normalised Hamming distance between two masks: the fraction of positions where they differ."""
    return (a != b.to(a.device)).float().mean().item()  # a resumed run's window comes back on the CPU


class EarlyBirdDetector:
    """Fires when the BN channel mask stops changing (You et al. 2020).

    Each ``update(model)`` takes the channel mask of pruning ratio ``ratio`` (:func:`bn_channel_mask`) and
    keeps the last ``window`` masks. Once the window is full it computes the largest normalised Hamming
    distance between the newest mask and the others, and fires at the first epoch where that is ≤ ε, as the
    authors' code does (You et al.: ε = 0.1, window 5). The window fills after epoch ``window``, so the earliest
    firing is after ``window`` trained epochs. (The authors' code also puts the initial network's mask in its
    window — its γ are all tied, so that mask keeps no channel — and can therefore fire after ``window`` − 1 epochs
    when the kept fraction 1 − ratio ≤ ε; its log counts that as epoch ``window`` − 1.) ``distances``
    holds that maximum per epoch (None while the window fills). ``max_epochs`` caps the dense phase as
    for :class:`EarlyCroPDetector`.
    """

    def __init__(self, ratio: float, epsilon: float = 0.1, window: int = 5, max_epochs: int | None = None):
        if not 0 <= ratio < 1:
            raise ValueError(f"ratio (fraction of BN channels removed) must be in [0, 1); got {ratio}")
        if window < 2:
            raise ValueError(f"window must hold at least 2 masks; got {window}")
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1 or None; got {max_epochs}")
        self.ratio, self.epsilon, self.window, self.max_epochs = ratio, epsilon, window, max_epochs
        self.masks: collections.deque[Tensor] = collections.deque(maxlen=window)
        self.distances: list[float | None] = []
        self.fired_at: int | None = None
        self.forced, self.forced_reason = False, None

    force = EarlyCroPDetector.force

    @property
    def epoch(self) -> int:
        return len(self.distances)

    @property
    def mask(self) -> Tensor | None:
        """The newest channel mask (True = kept)."""
        return self.masks[-1] if self.masks else None

    def state_dict(self) -> dict:
        """The mask window, the distances and the verdict (`cropkit.training.checkpoint`)."""
        return dict(masks=list(self.masks), distances=self.distances, fired_at=self.fired_at, forced=self.forced,
                    forced_reason=self.forced_reason)

    def load_state_dict(self, state: dict) -> None:
        self.masks = collections.deque(state["masks"], maxlen=self.window)
        self.distances, self.fired_at, self.forced = list(state["distances"]), state["fired_at"], state["forced"]
        self.forced_reason = state["forced_reason"]

    def update(self, model: nn.Module) -> bool:
        self.masks.append(bn_channel_mask(model, self.ratio))
        full = len(self.masks) == self.window
        distance = max(hamming(self.masks[-1], m) for m in list(self.masks)[:-1]) if full else None
        self.distances.append(distance)
        if self.fired_at is not None:
            return False
        if distance is not None and distance <= self.epsilon:
            self.fired_at = self.epoch
            return True
        if self.max_epochs is not None and self.epoch >= self.max_epochs:
            self.fired_at = self.epoch
            self.force(f"EarlyBird detector did not fire within the maximum dense phase of {self.max_epochs} epochs "
                       f"(ε = {self.epsilon:g}); pruning now (forced)")
            return True
        return False


from cropkit.training.callbacks import DetectorCallback  # noqa: E402,F401  (its home is cropkit.training.callbacks; kept importable here)
