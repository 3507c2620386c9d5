"""Run options, each declared once as an :class:`Option`: its name, type, default, what it accepts and its help.

The options every run reads are :data:`COMMON`; a method's own options are declared in `cropkit.methods.registry` next
to
the function that reads them and listed in its registry entry. From these declarations alone come the
validation of `cropkit.run` / `cropkit.compare`, the list of ``--set`` options in the command line's help, and the
cache key: a run's key holds ``COMMON`` and its method's options, so a value that can change the result cannot
replay a result computed with another value.

A default of :data:`PROFILE` means "the profile's value": the table `cropkit.experiments.profiles.RUN` holds it per
profile.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

DEFAULT_SPARSITY = 0.9  # the target weight sparsity a run, a grid or a sweep prunes to when none is given


class _Profile:
    def __repr__(self) -> str:
        return "the profile's"


PROFILE: Any = _Profile()  # default of an option whose value comes from cropkit.experiments.profiles.RUN


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


# numpy's seeds are 32-bit and a run derives further seeds from its own (LTR's re-initialisation: seed + 10 000)
SEED_LIMIT = 2**31


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**31); got {seed!r}")
    return seed


def check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0 (the zoo model's width multiplier); got {width!r}")
    return width


@dataclasses.dataclass(frozen=True)
class Option:
    """One run option. ``kind`` is ``int``, ``float``, ``bool`` or ``str``; ``minimum`` bounds an int, ``choices``
    lists a str's values; ``none`` says what ``None`` means where ``None`` is a value of its own (else ``None``
    given means the default). An option a method does not list is ignored by it (one grid hands every entry the
    same options), unless it is ``strict``: then a value other than the default is a ``ValueError`` for a method
    that does not list it (`cropkit.experiments.runs.configuration`), so that it never runs as the plain method."""

    name: str
    kind: type
    help: str
    default: Any = PROFILE
    minimum: int | None = None
    choices: tuple | None = None
    none: str | None = None
    strict: bool = False

    def check(self, value) -> None:
        """Raise a ``ValueError`` that says what is allowed unless ``value`` is one."""
        if value is None and self.none is not None:
            return
        if self.kind is bool and not isinstance(value, bool):
            raise ValueError(f"{self.name} must be True or False; got {value!r}")
        if self.kind is int and self.none is not None and not _is_int(value, self.minimum):
            raise ValueError(f"{self.name} must be an integer >= {self.minimum} ({self.help}) or None ({self.none}); "
                             f"got {value!r}")
        if self.kind is int:
            check_int(self.name, value, self.minimum if self.minimum is not None else -2**63)
        if self.kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{self.name} must be a number; got {value!r}")
        if self.kind is str and self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {self.name} {value!r}; choose one of {list(self.choices)}")
        if self.kind is str and not isinstance(value, str):
            raise ValueError(f"{self.name} must be a string; got {value!r}")

    def describe(self) -> str:
        """One line for the command line's help."""
        allowed = f" one of {'/'.join(map(str, self.choices))};" if self.choices else ""
        none = f"; None = {self.none}" if self.none else ""
        return f"{self.name} ({self.kind.__name__};{allowed} default {self.default!r}{none}): {self.help}"


def _is_int(value, minimum) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and (minimum is None or value >= minimum)


# What every run reads (the data, the model's training, the scoring batches, the cost columns): in every key.
COMMON: tuple[Option, ...] = (
    Option("epochs", int, "epochs of the sparse phase (the paper's 80 epochs after pruning)", minimum=1),
    Option("total_epochs", int, "every method's total budget: the sparse phase is what is left after the epochs "
           "spent before the last cut (LTR: each of its trainings)", default=None, minimum=1,
           none="E epochs after the last cut, whatever came before (the paper's tables)"),
    Option("batch_size", int, "training batch size", minimum=1),
    Option("limit", int, "training samples kept", minimum=1, none="the whole training set"),
    Option("lr", float, "learning rate (Adam)"),
    Option("weight_decay", float, "weight decay"),
    Option("schedule", str, "learning-rate schedule of every sparse phase (cropkit.train)"),
    Option("score_batches", int, "training batches a pruning criterion is scored on", minimum=1),
    Option("measure_emissions", bool, "measure CO₂ emissions with codecarbon"),
    # in the key: the best epoch's metric and the learning curve see only the epochs measured (the final metric and
    # the training itself are the same: measuring draws from no random generator the training uses)
    Option("eval_every", int, "measure the test set every this many epochs and after the last one (1: every epoch)",
           default=1, minimum=1),
    # in the key: with random augmentation (CIFAR) each worker draws its own random stream, so the batches differ
    Option("num_workers", int, "DataLoader worker processes (0: load in the training process)", default=0,
           minimum=0),
)


def declared(per_method: Iterable[tuple[Option, ...]]) -> dict[str, Option]:
    """{name: Option} of :data:`COMMON` and every method's options; a name shared by methods is one declaration."""
    table: dict[str, Option] = {}
    for option in [*COMMON, *(o for options in per_method for o in options)]:
        if table.setdefault(option.name, option) != option:
            raise ValueError(f"option {option.name!r} is declared twice, differently")
    return table


def help_text(options: dict[str, Option]) -> str:
    """The ``--set`` options of the command line, one line each."""
    return "\n".join(f"  {o.describe()}" for o in options.values() if o.name != "epochs")


# Read by the methods with a detector (EarlyCroP, EarlyBird): one declaration both list.
MAX_DENSE_EPOCHS = Option("max_dense_epochs", int, "the longest dense phase in epochs; the prune is forced then",
                          minimum=1)

# Read by every structured method: one declaration they all list.
LAYER_FLOOR = Option("layer_floor", float, "the least fraction of every layer's nodes a structured prune keeps "
                     "(a per-layer floor, e.g. 0.1; the rest by the global ranking); 0: the paper's single "
                     "global ranking", default=0.0)

# Frankle et al. (ICLR 2021, "Pruning Neural Networks at Initialization: Why are We Missing the Mark?"): ablations
# of a method's one-shot prune, applied in `cropkit.methods.context.Context.prune`. Listed by the methods whose
# prune is one call of it (the one-shot at-init methods, EarlyCroP-U/-S); strict: any other method refuses it.
SANITY_CHECKS = ("none", "shuffle", "reinit", "invert")
SANITY = Option("sanity", str, "Frankle et al. 2021's ablation of the one-shot prune (the one-shot at-init methods, "
                "EarlyCroP-U/-S): none (the method as it is); "
                "shuffle (each layer's mask permuted, structured: each layer's kept node count, nodes at random; "
                "seeded by the run's seed); reinit (the same masks or smaller network, weights drawn afresh); invert "
                "(the lowest-scored weights or nodes kept at the same budget)", default="none",
                choices=SANITY_CHECKS, strict=True)
