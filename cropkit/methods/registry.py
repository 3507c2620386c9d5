"""The registry of the sixteen methods of the paper's tables (Rachwan et al. 2022, Tables 1–4), and named variants.

    result = cropkit.run("earlycrop-s", data="digits", model="cnn", sparsity=0.9, epochs=10, seed=0)

Each method lives in a module of its own (`cropkit.methods.dense`, `.at_init`, `.earlycrop`, `.ltr`, `.earlybird`,
`.gatedecorators`, `.efficientconvnets`) as one function ``(Context) -> final model`` and its entry
(`cropkit.methods.method.Method`): label, family, when it prunes, the most epochs it trains, how many times it cuts,
the options it reads. ``METHODS`` are the registry's keys in the order of the paper's tables (dense, unstructured,
structured); ``cropkit methods`` prints every entry's facts under a profile's settings. ``sparsity`` is always the
target *weight* sparsity, ``epochs`` (E) the length of the sparse phase (the paper's "80 epochs after pruning"),
so a method that trains before it prunes trains that on top. Dense phases use a constant learning rate; every
sparse phase gets a fresh optimizer and the profile's schedule (one-cycle). Scoring batches come from their own
seeded loader over the training set, so scoring never shifts the order in which training sees the data. The run's
``seed`` builds the model (the dense reference of the sparsity columns is rebuilt with it), shuffles the data and
seeds the random criteria.

Adding a method: write its module (the function, its options, its ``Method``) and add one line to `REGISTRY`.
"""
from __future__ import annotations

import dataclasses

from cropkit.methods import at_init, earlycrop
from cropkit.methods.dense import DENSE
from cropkit.methods.earlybird import EARLYBIRD
from cropkit.methods.efficientconvnets import EFFICIENTCONVNETS
from cropkit.methods.gatedecorators import GATEDECORATORS
from cropkit.methods.ltr import LTR
from cropkit.methods.method import Method

# One line per method, in the order of the paper's tables: dense, then unstructured, then structured.
REGISTRY: dict[str, Method] = {
    "dense": DENSE,
    "random-u": at_init.one_shot("random", "Random-U", "Unstructured"),
    "snip": at_init.one_shot("snip", "SNIP", "Unstructured"),
    "grasp": at_init.one_shot("grasp", "GraSP", "Unstructured"),
    "crop-u": at_init.one_shot("crop", "CroP-U", "Unstructured"),
    "cropit-u": at_init.iterative(structured=False),
    "earlycrop-u": earlycrop.EARLYCROP_U,
    "ltr": LTR,
    "random-s": at_init.one_shot("random_nodes", "Random-S", "Structured"),
    "snap": at_init.one_shot("snap_nodes", "SNAP", "Structured"),
    "crop-s": at_init.one_shot("crop_nodes", "CroP-S", "Structured"),
    "cropit-s": at_init.iterative(structured=True),
    "earlycrop-s": earlycrop.EARLYCROP_S,
    "earlybird": EARLYBIRD,
    "gatedecorators": GATEDECORATORS,
    "efficientconvnets": EFFICIENTCONVNETS,
}
METHODS: tuple[str, ...] = tuple(REGISTRY)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named variant of a method: the method run with some of its options set (lesson 03's controls)."""

    method: str
    options: dict
    label: str


VARIANTS: dict[str, Variant] = {
    # LTR with the survivors re-initialised at random instead of rewound (Frankle & Carbin's control)
    "ltr-reinit": Variant("ltr", {"reinit": True}, "LTR, random reinit"),
    # EarlyCroP's timing with |θ_t| instead of CroP: *when* apart from *how* (lesson 03)
    "earlycrop-u-magnitude": Variant("earlycrop-u", {"criterion": "magnitude"}, "EarlyCroP timing, magnitude"),
}
LABELS = {**{name: m.label for name, m in REGISTRY.items()}, **{name: v.label for name, v in VARIANTS.items()}}
FAMILIES = {**{name: m.family for name, m in REGISTRY.items()},
            **{name: REGISTRY[v.method].family for name, v in VARIANTS.items()}}


def resolve(entry: str) -> tuple[str, dict]:
    """(method, its options) of an entry: a method of `METHODS` or a named variant; unknown names raise."""
    if entry in VARIANTS:
        return VARIANTS[entry].method, dict(VARIANTS[entry].options)
    if entry in REGISTRY:
        return entry, {}
    raise ValueError(f"unknown method {entry!r}; choose one of {list(METHODS)} or a variant {list(VARIANTS)}")


def entry_of(method: str, config: dict) -> str:
    """The entry a run of ``method`` with ``config`` (its options) belongs to: a variant when its options say so."""
    return next((name for name, v in VARIANTS.items()
                 if v.method == method and all(config.get(k) == x for k, x in v.options.items())), method)


def family(name: str) -> tuple[str, ...]:
    """The methods of a family ("Unstructured", "Structured"), in the tables' order."""
    return tuple(m for m, spec in REGISTRY.items() if spec.family == name)
