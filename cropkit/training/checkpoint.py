"""Runs that resume: a checkpoint after every epoch, next to the run's cache entry, and how a run goes on from it.

A paper-scale run trains for hours and cluster jobs get pre-empted. With ``cache=True``, `cropkit.run` writes
``<cache key>.ckpt.pt`` beside ``<cache key>.json`` at the end of every epoch (a temporary file in the same folder,
then ``os.replace``: a kill never leaves half a checkpoint, and a later run removes the temporary file a killed
writer left, `remove_stale`) and deletes it once the result is cached. A checkpoint that cannot be written (a full
disk) costs a warning: the run goes on without checkpoints and still returns its result. Running the
same configuration again replays the method and continues from the last finished epoch:

    the method (a plain function) runs again from the top; every ``ctx.fit`` of a training that had finished
    before the checkpoint's returns at once; the training the checkpoint was written in loads, right after its
    seeding, the model (masks re-applied and shapes restored, `conform`), the callbacks' state (detectors, θ_k,
    penalties, gates), the loop (optimizer, schedule, history, every random number generator) and the run's
    bookkeeping, and goes on — on the CPU exactly as if it had never stopped.

What a method computes between trainings and needs later (LTR's rewind point θ_k) lives in ``ctx.state``, which
is saved too, so a replay never depends on a training it skipped. A checkpoint holds tensors, lists, numbers and
strings only: it loads with ``torch.load(path, weights_only=True)``. One that cannot be read, that belongs to
another configuration, or that loads but does not fit the run (another model's tensors: a prune only shrinks them;
tensors that do not compute together; a training the run never reaches; anything that fails while it is restored)
is deleted with a warning and the run starts over; never resumed silently.
"""
from __future__ import annotations

import glob
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.core.masks import set_mask
from cropkit.core.plumbing import eval_mode, is_cropkit_warning
from cropkit.core.structured import sync_shape_attributes
from cropkit.training.loop import Callback

FORMAT = 1
_MASK = ".parametrizations.weight.0.mask"  # the buffer of a cropkit.core.masks.Mask
_KEYS = {"format", "config", "training", "epoch", "seconds", "warnings", "context", "model", "parameters", "trainer",
         "callbacks"}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run it was meant to resume."""


def path_for(cache_entry: str | Path) -> Path:
    """The checkpoint of the run cached at ``cache_entry`` (``<key>.json`` → ``<key>.ckpt.pt``)."""
    cache_entry = Path(cache_entry)
    return cache_entry.with_name(f"{cache_entry.stem}.ckpt.pt")


def save(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over ``path``. A write
    that fails raises ``OSError`` (torch reports a full disk as a ``RuntimeError``: "unexpected pos")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as err:  # the file's own OSError is lost inside torch's writer
                raise OSError(f"writing {tmp.name} failed; the disk may be full ({err})") from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _temporary(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


STALE_SECONDS = 600  # a temporary file this old whose writer is gone here is a kill's leftover


def remove_stale(path: Path) -> None:
    """Delete the temporary files of ``path`` that a killed writer left: their process (the pid in the name) is
    gone and they were last written over ``STALE_SECONDS`` ago (a cache folder may be shared with other machines,
    whose pids mean nothing here)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        except OSError:  # removed meanwhile
            continue
        if pid.isdigit() and int(pid) != os.getpid() and old and not _running(int(pid)):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (elsewhere than on POSIX: unknown, so False)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def load(path: Path, config: str) -> dict | None:
    """The checkpoint at ``path`` if it is one of the run whose configuration (JSON text) is ``config``; None when
    there is none. An unreadable one, or one of another configuration, is deleted with a warning."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        why = _malformed(state) or (None if state["config"] == config else "it belongs to another configuration")
    except Exception as err:  # truncated, corrupt, or not a torch file: all mean the same here
        why = f"it cannot be read ({type(err).__name__}: {err})"
    if why is None:
        return state
    warnings.warn(f"ignoring the checkpoint {path}: {why}; the run starts over", stacklevel=3)
    discard(path)
    return None


# what each entry of a checkpoint holds (a bool is no int here)
_KINDS = {"training": int, "epoch": int, "seconds": (int, float), "warnings": list, "context": dict, "model": dict,
          "parameters": list, "trainer": dict, "callbacks": list}
_CONTEXT = {"history": list, "epochs_trained": int, "trainings": int, "state": dict}


def _malformed(state) -> str | None:
    """Why ``state`` is not a checkpoint this module wrote, or None."""
    if not isinstance(state, dict) or state.get("format") != FORMAT or not _KEYS <= state.keys():
        return "not a cropkit checkpoint"
    wrong = [k for k, kind in _KINDS.items() if isinstance(state[k], bool) or not isinstance(state[k], kind)]
    context = state["context"] if isinstance(state["context"], dict) else {}
    wrong += [f"context.{k}" for k, kind in _CONTEXT.items()
              if isinstance(context.get(k), bool) or not isinstance(context.get(k), kind)]
    if not wrong and not all(isinstance(c, dict) and {"kind", "state"} <= c.keys() for c in state["callbacks"]):
        wrong.append("callbacks")
    return f"not a cropkit checkpoint (wrong kind of value in {wrong})" if wrong else None


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the model's structure

@torch.no_grad()
def conform(model: nn.Module, state: dict[str, torch.Tensor], parameters: list[str]) -> nn.Module:
    """Give ``model`` (freshly built by the method) the saved structure, then load ``state`` (its ``state_dict``):
    masks of `cropkit.core.masks` added or removed, tensors resized (structured removal), tensors the saved model had
    and this one lacks added (``parameters`` names the saved parameters), tensors it has and the saved lacks removed
    (the gates of `cropkit.methods.gates`). Size attributes (``out_channels``, ``num_features``, …) follow the
    tensors."""
    depthwise = {m: _depthwise(m) for m in model.modules()}  # before any resize changes the channel counts
    touched = set()
    for name, module in list(model.named_modules()):
        saved_mask = state.get(f"{name}{_MASK}")
        if parametrize.is_parametrized(module, "weight") and saved_mask is None:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        elif saved_mask is not None and not parametrize.is_parametrized(module, "weight"):
            _check_shrunk(f"{name}{_MASK}", saved_mask.shape, module.weight.shape)
            if _resize(module, "weight", saved_mask.shape):
                touched.add(module)
            set_mask(module, saved_mask.to(module.weight.device))
    modules = dict(model.named_modules())
    current = model.state_dict(keep_vars=True)
    device = next(iter(current.values()), torch.empty(0)).device
    for key, value in state.items():
        owner, _, attr = key.rpartition(".")
        module = modules.get(owner)
        if module is None:
            raise CheckpointError(f"the saved model has {key!r}, but the model has no module {owner!r}")
        if key not in current:
            fresh = torch.empty(value.shape, dtype=value.dtype, device=device)
            if key in parameters:
                module.register_parameter(attr, nn.Parameter(fresh))
            else:
                module.register_buffer(attr, fresh)
        else:
            _check_shrunk(key, value.shape, current[key].shape)
            if _resize(module, attr, value.shape):
                touched.add(module)
    for module in touched:
        sync_shape_attributes(module, depthwise[module])
    for key in set(current) - set(state):
        owner, _, attr = key.rpartition(".")
        delattr(modules[owner], attr)
    model.load_state_dict(state)
    return model


def _check_shrunk(key: str, saved: torch.Size, current: torch.Size) -> None:
    """A prune only removes: a saved tensor of another rank, or larger than the fresh model's, is of another model."""
    if len(saved) != len(current) or any(s > c for s, c in zip(saved, current)):
        raise CheckpointError(f"the saved model's {key!r} has shape {tuple(saved)}, the model's {tuple(current)}: a "
                              f"prune only removes, so the checkpoint holds another model")


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups == module.in_channels \
        == module.out_channels


def _resize(module: nn.Module, attr: str, shape: torch.Size) -> bool:
    """Give ``module.attr`` the shape ``shape`` (values undefined until loaded); True if it changed."""
    current = getattr(module, attr)
    if current.shape == shape:
        return False
    fresh = torch.empty(shape, dtype=current.dtype, device=current.device)
    setattr(module, attr, nn.Parameter(fresh, current.requires_grad) if isinstance(current, nn.Parameter) else fresh)
    return True


# ----------------------------------------------------------------------------- one run's checkpoint

class CheckpointFile:
    """The checkpoint of one run: where it lives, what it held when the run started (``saved``), the clock and
    the warnings of the earlier segments. `cropkit.run` makes one; `cropkit.methods.context.Context.trainer` hands each
    trainer a :class:`Checkpoint` callback bound to it."""

    def __init__(self, path: Path, config: str):
        self.path, self.config = Path(path), config
        remove_stale(self.path)
        self.saved = load(self.path, config)
        self.resume_training = self.saved["training"] if self.saved is not None else -1
        self.prior_seconds = self.saved["seconds"] if self.saved is not None else 0.0
        self.prior_warnings: list[str] = list(self.saved["warnings"]) if self.saved is not None else []
        self.started = time.perf_counter()
        self.caught: list = []      # the run's recorded warnings (cropkit.run's catch_warnings list)
        self.caught_from = 0        # warnings before this index came from the replay, not from the run
        self.failed = False

    @property
    def context_state(self) -> dict:
        """``ctx.state`` as saved (empty for a fresh run): what the method needs before any training resumes."""
        return dict(self.saved["context"]["state"]) if self.saved is not None else {}

    def seconds(self) -> float:
        """Wall time of the run: the earlier segments plus this one."""
        return self.prior_seconds + time.perf_counter() - self.started

    def warnings(self) -> list[str]:
        return self.prior_warnings + [str(w.message) for w in self.caught[self.caught_from:] if is_cropkit_warning(w)]

    def skips(self, trainer) -> bool:
        """True for a training that finished before the checkpoint's: ``ctx.fit`` returns at once."""
        return _index(trainer) < self.resume_training

    def write(self, ctx, trainer, training: int) -> None:
        if self.failed:
            return
        state = dict(format=FORMAT, config=self.config, training=training, epoch=trainer.epoch,
                     seconds=self.seconds(), warnings=self.warnings(), context=ctx.bookkeeping(),
                     model=trainer.model.state_dict(), parameters=[n for n, _ in trainer.model.named_parameters()],
                     trainer=trainer.state_dict(),
                     callbacks=[dict(kind=type(c).__name__, state=c.state_dict()) for c in _stateful(trainer)])
        try:
            save(self.path, state)
        except OSError as err:
            self.failed = True
            warnings.warn(f"the checkpoint {self.path} could not be written ({err}). The run goes on without "
                          f"checkpoints: killed now, it would resume from the last checkpoint written, if any",
                          stacklevel=2)

    def restore(self, ctx, trainer) -> None:
        """Load the saved training into ``trainer`` (called from its ``on_train_begin``, after the seeding)."""
        saved, self.saved = self.saved, None
        callbacks = _stateful(trainer)
        kinds = [c["kind"] for c in saved["callbacks"]]
        try:
            if kinds != [type(c).__name__ for c in callbacks]:
                raise CheckpointError(f"it was written with the callbacks {kinds}, this training has "
                                      f"{[type(c).__name__ for c in callbacks]}")
            conform(trainer.model, saved["model"], saved["parameters"])
            for callback, entry in zip(callbacks, saved["callbacks"]):
                callback.load_state_dict(entry["state"], trainer)
            _computes(trainer.model, ctx)
            trainer.load_state_dict(saved["trainer"])  # last: it sets every random generator
            ctx.restore(saved["context"])
        except Exception as err:  # whatever fails here (a user's callback too) means the same: it does not fit
            raise CheckpointError(f"the checkpoint {self.path} does not fit this run: {err!r}") from err
        self.caught_from = len(self.caught)

    def check_used(self) -> None:
        """After the method returned: a checkpoint written in a training the run never reached does not fit it."""
        if self.saved is not None:
            raise CheckpointError(f"the checkpoint {self.path} does not fit this run: it was written in training "
                                  f"{self.resume_training}, which this run never reaches")


@torch.no_grad()
def _computes(model: nn.Module, ctx) -> None:
    """One eval-mode forward pass of the restored model on two test inputs: saved tensors that do not fit together
    (a norm narrower than its layer) fail here, not in the middle of the next epoch. Draws from generators only
    before the trainer puts back the saved ones."""
    if not ctx.on_policy and ctx.data.test is None:
        return
    x = ctx.example_inputs if ctx.on_policy else next(iter(ctx.data.test))[0][:2]
    with eval_mode(model):
        model(x.to(ctx.device))


def _stateful(trainer) -> list:
    """The trainer's callbacks that keep state (a stateless one, e.g. a logger, may come and go between runs)."""
    return [c for c in trainer.callbacks if hasattr(c, "state_dict") and not isinstance(c, Checkpoint)]


def _index(trainer) -> int:
    return next(c.training for c in trainer.callbacks if isinstance(c, Checkpoint))


class Checkpoint(Callback):
    """Writes the run's checkpoint at the end of every epoch of training number ``training`` of the run, and
    loads it at the start of that training when the run resumes. Keep it the last callback, so that a prune in
    another callback's ``on_epoch_end`` is in the saved state."""

    def __init__(self, file: CheckpointFile, ctx, training: int):
        self.file, self.ctx, self.training = file, ctx, training

    def on_train_begin(self, trainer) -> None:
        if self.file.saved is not None and self.file.resume_training == self.training:
            self.file.restore(self.ctx, trainer)

    def on_epoch_end(self, trainer) -> None:
        self.file.write(self.ctx, trainer, self.training)
