"""A lesson's parameters cell as papermill reads it, checked before a kernel starts.

Each lesson has one cell tagged ``parameters`` holding plain literals (``PROFILE``, ``OUTPUT_DIR``, …), one per line
with a comment that papermill shows as its help (``papermill --help-notebook``). papermill only *warns* about
parameter names a notebook does not declare and never checks types; :func:`check_parameters` rejects both (and
:func:`cropkit.lessons.notebook.execute` calls it before a kernel starts). A parameter's type is the one its papermill
type
comment names (``EPOCHS = None  # type: int  training epochs``), else its default's; an ``int`` is accepted for a
``float`` and a tuple for a list, and a parameter whose default is ``None`` ("the profile's value") also takes
``None``. A comment must hold no ``=``: papermill skips such a line, and :func:`parameters` refuses it.
"""
from __future__ import annotations

import ast
from pathlib import Path

TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": (list, tuple), "tuple": (list, tuple),
         "dict": dict}


def _parameters_cell(nb) -> dict:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    return cells[0]


def parameters(path: str | Path) -> dict[str, dict]:
    """``{name: {"default", "type", "help"}}`` as papermill declares them (``papermill.inspect_notebook``).

    Every line of the parameters cell must be ``NAME = literal  # help``; a line papermill cannot read (an ``=``
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


def check_parameters(path: str | Path, given: dict) -> None:
    """Raise ``ValueError`` for a name the lesson does not declare or a value of the wrong type."""
    declared = parameters(path)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{Path(path).name} has no parameter(s) {unknown}; its parameters are {sorted(declared)}")
    for name, value in given.items():
        kind, default = declared[name]["type"], declared[name]["default"]
        allowed = TYPES.get(kind, object) if kind else object
        if value is None and default is None:
            continue  # None: the profile's value
        if not isinstance(value, allowed) or (isinstance(value, bool) and kind in ("int", "float")):
            raise ValueError(f"{Path(path).name}: {name} must be {kind}"
                             f"{' or None' if default is None else ''} ({declared[name]['help']}); got {value!r}")
