"""The notebooks' widgets: one error policy for every widget callback, and the explorers (`cropkit.lessons.explorer`'s
``StructuredExplorer``, `cropkit.lessons.widgets_ntk`), importable from here.

**Callback errors are never swallowed.** ipywidgets catches an exception raised by an ``observe`` callback that a
browser event triggered and only logs it to the kernel's log, and papermill never sees it. :func:`safe_observe`
wraps a callback so that an exception is (1) recorded in a list (``explorer.errors``, or :data:`ERRORS`),
(2) shown as a traceback in an ``Output`` widget, where the learner sees it, and (3) re-raised, so that a value
set from Python — a test, or a notebook cell — fails loudly. :func:`raise_recorded` turns recorded errors into an
exception at the end of a notebook.
"""
from __future__ import annotations

import traceback
from typing import Callable

# Callback errors recorded by safe_observe when no list of its own is given (see raise_recorded).
ERRORS: list[BaseException] = []


# ----------------------------------------------------------------------------- callbacks that fail loudly

class CallbackError(RuntimeError):
    """Raised by :func:`raise_recorded` when widget callbacks failed."""


def error_output(err: BaseException) -> dict:
    """A notebook ``error`` output (what a failing cell shows) for an exception, for an ``Output`` widget."""
    return {"output_type": "error", "ename": type(err).__name__, "evalue": str(err),
            "traceback": traceback.format_exception(type(err), err, err.__traceback__)}


def safe_observe(widget, fn: Callable, names="value", *, output=None, errors: list | None = None) -> Callable:
    """``widget.observe(fn, names)``, but an exception in ``fn`` is recorded, displayed and re-raised.

    ``errors``: the list that records exceptions (default: the module's :data:`ERRORS`). ``output``: an
    ``ipywidgets.Output`` that receives the traceback (appended to what it shows). The re-raise makes a value
    set from Python (``slider.value = 0.9``) fail where it was set; for an event from the browser, ipywidgets
    would only log it, so the Output and the record are what make it visible. Returns the installed handler
    (pass it to ``widget.unobserve`` to remove it).
    """
    record = ERRORS if errors is None else errors

    def handler(change):
        try:
            return fn(change)
        except Exception as err:
            record.append(err)
            if output is not None:
                output.outputs = tuple(output.outputs) + (error_output(err),)
            raise

    widget.observe(handler, names=names)
    return handler


def raise_recorded(errors: list | None = None) -> None:
    """Raise :class:`CallbackError` if any widget callback failed (call it in a notebook's last cell)."""
    record = ERRORS if errors is None else errors
    if record:
        details = "\n".join(f"  {type(e).__name__}: {e}" for e in record)
        raise CallbackError(f"{len(record)} widget callback(s) failed:\n{details}")
