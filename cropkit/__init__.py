"""cropkit: a notebook-first kit for early network pruning (EarlyCroP, ICML 2022) and its baselines."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("paths", "data", "models", "train", "measure", "scores", "prune", "ntk", "timing", "methods", "results",
               "profiles", "notebook", "widgets", "widgets_ntk", "lottery", "report", "claims", "cli", "gates",
               "plumbing", "callbacks", "options", "context", "runs", "comparison", "masks", "dependencies",
               "structured", "schedules", "derivatives", "storage", "hardware", "explorer", "sweeps", "executors",
               "tracking", "tasks", "domains", "task_models", "control")
# cropkit.<name>
_TOP = {"METHODS": "methods", "run": "runs", "compare": "comparison", "Result": "results", "sweep": "sweeps"}


def __getattr__(name):
    # Submodules load on first use so `import cropkit` stays fast and a notebook pays only for what it touches.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _TOP:
        return getattr(importlib.import_module(f"{__name__}.{_TOP[name]}"), name)
    raise AttributeError(f"module 'cropkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_TOP))
