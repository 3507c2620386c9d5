"""A method's registry entry: how it trains and its facts, declared once (`cropkit.methods.registry` lists them).

Every method is one small function ``(Context) -> final model`` in a module of its own; its entry says what the
paper's tables call it, its family, when it prunes, the most epochs it trains and how many times it cuts, as
functions of the run's settings, and the options it reads besides `cropkit.methods.options.COMMON` (they enter its
cache key). The command line, the sweeps' cost estimate, the claims and lesson 03's bill read these facts.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from cropkit.methods.context import Context
from cropkit.methods.options import Option

WHEN = ("never", "at init", "early", "after training")


def budget(cfg, before: int = 0) -> int:
    """The most epochs a run trains when at most ``before`` epochs come before its last cut: the equal budget
    ``total_epochs`` when set, else ``before`` + E (the paper's "80 epochs after pruning")."""
    return cfg.total_epochs or before + cfg.epochs


def sparse_phase(cfg) -> int:
    """A method that prunes at initialisation (or never): its whole budget."""
    return budget(cfg)


@dataclasses.dataclass(frozen=True)
class Method:
    """train    (Context) -> the final model
    label    its name in the paper's tables
    family   "Dense", "Unstructured" or "Structured"
    when     when it prunes: "never", "at init", "early" (during training) or "after training"
    schedule how it prunes then, in words
    epochs   (settings) -> the most epochs it trains, dense phases and every training included
    cuts     (settings) -> how many times it prunes
    options  the options it reads besides COMMON (they enter its cache key)
    check    (settings) -> None: what the options' declarations alone cannot say; raises ValueError"""

    train: Callable[[Context], nn.Module]
    label: str
    family: str
    when: str
    schedule: str
    epochs: Callable = sparse_phase
    cuts: Callable = lambda cfg: 1  # noqa: E731
    options: tuple[Option, ...] = ()
    check: Callable | None = None

    def __post_init__(self):
        if self.when not in WHEN:
            raise ValueError(f"a method prunes {WHEN}; got when={self.when!r}")

    @property
    def settings(self) -> tuple[str, ...]:
        """The names of :attr:`options`."""
        return tuple(o.name for o in self.options)
