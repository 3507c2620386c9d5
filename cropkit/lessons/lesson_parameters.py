"""A lesson's parameters cell as papermill reads it, and its sidecar of profile values, checked before a kernel starts.

Each lesson has one cell tagged ``parameters`` holding plain literals (``PROFILE``, ``OUTPUT_DIR``, ``EPOCHS``, …),
one per line with a comment that papermill shows as its help (``papermill --help-notebook``); a dict or list may span
several lines, its help on the last one. The values in the cell are the ``cpu`` profile's. papermill only *warns*
about parameter names a notebook does not declare and never checks types; :func:`check_parameters` rejects both (and
:func:`cropkit.lessons.notebook.execute` calls it before a kernel starts). A parameter's type is the one its papermill
type comment names (``EPOCHS = 6  # type: int  training epochs``), else its default's; alternatives are joined by
``|`` (``LIMIT = None  # type: int|None  …``); an ``int`` is accepted for a ``float`` and a tuple for a list. A comment
must hold no ``=``: papermill skips such a line, and :func:`parameters` refuses it.

The other profiles' values sit beside the lesson in its **sidecar**, ``notebooks/NN_name.profiles.json``:
``{"smoke": {"EPOCHS": 2, …}, "paper": {…}}``, each a profile's values that differ from the cell's, under the cell's
parameter names (:func:`profile_values`; no sidecar: no profile changes anything).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from cropkit.experiments.profiles import PROFILES

TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": (list, tuple), "tuple": (list, tuple),
         "dict": dict, "None": type(None)}
CELL_PROFILE = "cpu"  # the profile whose values the parameters cell holds; the sidecar holds the others
SIDECAR = ".profiles.json"  # notebooks/NN_name.ipynb → notebooks/NN_name.profiles.json


def _parameters_cell(nb) -> dict:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    return cells[0]


def parameters(path: str | Path) -> dict[str, dict]:
    """``{name: {"default", "type", "help"}}`` as papermill declares them (``papermill.inspect_notebook``).

    Every statement of the parameters cell must be ``NAME = literal  # help``; a line papermill cannot read (an ``=``
    inside its comment hides it from papermill) or a value that is not a literal raises ``ValueError``.
    """
    import nbformat
    import papermill

    path = Path(path)
    source = _parameters_cell(nbformat.read(str(path), as_version=4)).source
    assigned = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell may only hold `NAME = literal` lines; got "
                             f"{ast.get_source_segment(source, node)!r}")
        assigned.append(node.targets[0].id)
    found = papermill.inspect_notebook(str(path))
    hidden = [name for name in assigned if name not in found]
    if hidden:
        raise ValueError(f"{path.name}: papermill cannot read the parameter line(s) of {hidden}; "
                         "keep `=` out of their comments")
    declared = {}
    for name, p in found.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            raise ValueError(f"{path.name}: {name} = {p['default']} is not a plain literal") from None
        kind = p["inferred_type_name"]
        kind = None if kind == "None" else kind
        declared[name] = {"default": default, "type": kind or (type(default).__name__ if default is not None else None),
                          "help": p["help"]}
    return declared


def declared_parameters(path: str | Path) -> dict:
    """``{name: default value}`` of the parameters cell (see :func:`parameters`)."""
    return {name: p["default"] for name, p in parameters(path).items()}


def _allowed(kind: str | None) -> tuple[type, ...]:
    """The Python types a type comment allows (``float|None`` → int, float, NoneType); an unknown name allows any."""
    allowed = []
    for name in (kind or "").split("|"):
        found = TYPES.get(name.strip(), object)
        allowed += found if isinstance(found, tuple) else [found]
    return tuple(allowed) or (object,)


def check_parameters(path: str | Path, given: dict, declared: dict | None = None) -> None:
    """Raise ``ValueError`` for a name the lesson does not declare or a value of the wrong type (``declared``:
    :func:`parameters` of the lesson, when the caller has read it already)."""
    declared = parameters(path) if declared is None else declared
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{Path(path).name} has no parameter(s) {unknown}; its parameters are {sorted(declared)}")
    for name, value in given.items():
        kind = declared[name]["type"]
        allowed = _allowed(kind)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ValueError(f"{Path(path).name}: {name} must be {kind} ({declared[name]['help']}); got {value!r}")


def sidecar(path: str | Path) -> Path:
    """Where a lesson's profile values live: ``NN_name.profiles.json`` beside ``NN_name.ipynb``."""
    path = Path(path)
    return path.with_name(path.stem + SIDECAR)


def profile_values(path: str | Path, profile: str, declared: dict | None = None) -> dict:
    """The values ``profile`` gives the lesson's parameters on top of its cell: ``{}`` for the cell's own profile
    (``cpu``) or a lesson without a sidecar, else the sidecar's entry for ``profile``, every name a declared
    parameter and every value of its type (``ValueError`` naming the sidecar otherwise)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    file = sidecar(path)
    if profile == CELL_PROFILE or not file.exists():
        return {}
    try:
        table = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file.name} is not valid JSON: {err}") from None
    others = [p for p in PROFILES if p != CELL_PROFILE]
    if not isinstance(table, dict) or set(table) - set(others):
        raise ValueError(f"{file.name} must map profiles {others} to their values (the parameters cell holds "
                         f"{CELL_PROFILE!r}'s); got {sorted(table) if isinstance(table, dict) else table!r}")
    values = table.get(profile, {})
    fixed = sorted({"PROFILE", "OUTPUT_DIR"} & set(values))
    if not isinstance(values, dict) or fixed:
        raise ValueError(f"{file.name}: {profile!r} must map parameter names to values"
                         + (f", without {fixed} (the harness sets them)" if fixed else ""))
    try:
        check_parameters(path, values, declared)
    except ValueError as err:
        raise ValueError(f"{file.name}, profile {profile!r}: {err}") from None
    return values
