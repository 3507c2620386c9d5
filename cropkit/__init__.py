"""cropkit: a notebook-first kit for early network pruning (EarlyCroP, ICML 2022) and its baselines.

The package is built in layers, each a sub-package that imports only the ones below it:

    core/         scores, derivatives, masks, coupled channels, structured surgery, schedules, costs
    tasks/        tasks (loss, metric), datasets, the model zoo
    training/     the training loop and its callbacks (detectors, checkpoints, tracking)
    methods/      the methods of the paper's tables, their options and registry
    experiments/  one run, grids of runs, sweeps, the paper's tables and claims, the results cache
    lessons/      the lessons' harness, pages, widgets

A learner reaches the modules a lesson uses by short names (``ck.data``, ``ck.scores``, ``ck.run``, …: the table
below); everything else is imported from where it lives (``from cropkit.methods.registry import LABELS``).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# cropkit.<short name> → the module it names, loaded on first use so that `import cropkit` stays fast
MODULES = {"data": "tasks.data", "models": "tasks.models", "train": "training.loop", "timing": "training.timing",
           "measure": "core.measure", "hardware": "core.hardware", "storage": "core.storage", "layers": "core.layers",
           "scores": "core.scores", "prune": "core.prune", "ntk": "core.ntk",
           "paths": "paths", "notebook": "lessons.notebook", "widgets": "lessons.widgets",
           "explorer": "lessons.explorer",
           "claims": "experiments.claims", "verdicts": "experiments.verdicts", "results": "experiments.results"}
# cropkit.<name> → a function or constant, and the module it lives in
NAMES = {"run": "experiments.runs", "compare": "experiments.comparison", "sweep": "experiments.sweeps",
         "Result": "experiments.results", "METHODS": "methods.registry"}


def __getattr__(name):
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{MODULES[name]}")
    if name in NAMES:
        return getattr(importlib.import_module(f"{__name__}.{NAMES[name]}"), name)
    raise AttributeError(f"module 'cropkit' has no attribute {name!r}; its short names are "
                         f"{sorted([*MODULES, *NAMES])}, and every module imports from where it lives "
                         f"(e.g. cropkit.training.checkpoint)")


def __dir__():
    return sorted([*globals(), *MODULES, *NAMES])
