"""Where cropkit reads and writes, independent of the working directory of whoever calls it.

A notebook kernel runs in the folder of its notebook (JupyterLab, papermill, Colab), a script runs wherever the
user stands; both must find the same data and the same results cache. So every default folder is absolute:

| folder        | first of                                                                                    |
|---------------|---------------------------------------------------------------------------------------------|
| data root     | ``$CROPKIT_DATA``; the checkout's ``data/`` when cropkit runs from a source checkout; the     |
|               | per-user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)``/cropkit/data``                 |
| results cache | ``$CROPKIT_CACHE``; the checkout's ``outputs/cache``; ``<user cache>/cropkit/results``        |

A path a user gives explicitly is used as given (relative to the caller's working directory), never rewritten, with
one exception: a lesson's ``OUTPUT_DIR``. A kernel cannot know where its caller stood, so a relative ``OUTPUT_DIR``
is taken from the checkout root when cropkit runs from a source checkout (the lessons' default ``"outputs"`` is
then the checkout's git-ignored ``outputs/``, whichever folder JupyterLab starts the kernel in) and from the
kernel's working directory otherwise (Colab, Binder, an installed wheel). The main job and
:func:`cropkit.lessons.notebook.execute` always hand the kernel an absolute folder, resolved against *their* caller's
working directory. Either way nothing is written under ``notebooks/``.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The source checkout cropkit is imported from (it holds ``pyproject.toml`` and ``notebooks/``), or None
    for an installed wheel."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def user_cache() -> Path:
    """The per-user cache folder for cropkit: ``$XDG_CACHE_HOME/cropkit`` or ``~/.cache/cropkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cropkit"


def data_root() -> Path:
    """Where datasets live: ``$CROPKIT_DATA``, else the checkout's ``data/``, else ``<user cache>/data``."""
    if os.environ.get("CROPKIT_DATA"):
        return Path(os.environ["CROPKIT_DATA"]).expanduser().resolve()
    root = checkout()
    return root / "data" if root is not None else user_cache() / "data"


def cache_root() -> Path:
    """Where run results are cached: ``$CROPKIT_CACHE``, else the checkout's ``outputs/cache``, else
    ``<user cache>/results``."""
    if os.environ.get("CROPKIT_CACHE"):
        return Path(os.environ["CROPKIT_CACHE"]).expanduser().resolve()
    root = checkout()
    return root / "outputs" / "cache" if root is not None else user_cache() / "results"


def ensure_dir(path: str | Path) -> Path:
    """``path`` as an absolute folder that exists (created with its parents if needed)."""
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def lesson_output(output_dir: str | Path) -> Path:
    """A lesson's ``OUTPUT_DIR`` as an absolute folder that exists: a relative one is taken from the checkout root
    when cropkit runs from a checkout, else from the working directory (see the module docstring)."""
    path = Path(output_dir).expanduser()
    root = checkout()
    if not path.is_absolute() and root is not None:
        path = root / path
    return ensure_dir(path)


def output_file(output_dir: str | Path, name: str) -> Path:
    """``OUTPUT_DIR/name`` with its folder created (see :func:`lesson_output`): where a lesson saves a figure or
    its JSON, so that it runs the same in JupyterLab, Colab, papermill and the main job.

    >>> fig.savefig(ck.paths.output_file(OUTPUT_DIR, "00_tour_learning_curve.png"))
    """
    path = lesson_output(output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def unwritable(path: str | Path, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder=True`` a folder to write into) cannot be written, or None when it
    can: checked by creating it (and its parents), so that a run finds out before it starts, not after."""
    path = Path(path).expanduser()
    probe = path / f".cropkit-write-test-{os.getpid()}" if folder else path
    existed = probe.exists()
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "a"):
            pass
    except OSError as err:
        blocking = next((p for p in probe.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            return f"{blocking} is a file, not a folder"
        return f"{err.strerror or err}: {err.filename or probe}"
    if not existed:
        probe.unlink(missing_ok=True)
    return None
