"""A small training loop, extended by callbacks.

The loop knows about batches, an optimizer and a learning-rate schedule; everything else — pruning schedules,
the EarlyCroP detector, logging — is a :class:`Callback` (open_lth's ``standard_callbacks`` idea).

    trainer = Trainer(model, data, epochs=10, callbacks=[MyCallback()])
    history = trainer.fit()

A callback may change the plan while training runs: ``trainer.epochs`` (planned total) can be raised,
``trainer.stop = True`` ends training after the current epoch, and after a structured prune, which replaces
parameter tensors, ``trainer.reset_optimizer()`` builds a fresh optimizer and schedule (`cropkit.core.structured`).

The loss and the metric come from the data's task (`cropkit.tasks.task`: cross-entropy and accuracy for classification,
the history's ``train_acc``/``test_acc``; other tasks write ``train_<metric>``/``test_<metric>``, e.g. ``test_rmse``);
an explicit ``loss_fn=`` still wins. A training loader with a ``bind(model)`` method is bound to the current model
at every epoch begin (on-policy data is collected with the network being trained, pruned or not).

A training loss that is not a finite number stops the loop at once with :class:`DivergedError` (epoch and step
named): a diverged run is never reported as a result.

Between epochs a trainer's whole state — counters, plan, history, optimizer, schedule and every random number
generator — is ``trainer.state_dict()``, plain tensors and numbers, and a callback may keep state of its own
(``state_dict()`` / ``load_state_dict(state, trainer)``): `cropkit.training.checkpoint` saves both after every epoch, so
that a killed run goes on where it stopped.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cropkit.core.plumbing import frozen, rng_state, set_rng_state
from cropkit.tasks.task import CLASSIFICATION


class DivergedError(FloatingPointError):
    """The training loss stopped being a finite number: the run diverged (usually a learning rate too high)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch device this machine has (None = :func:`default_device`); anything else is a
    ``ValueError`` that says what is available."""
    if device is None:
        return default_device()
    available = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                           if torch.cuda.is_available() else [])
    if torch.backends.mps.is_available():
        available.append("mps")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; available here: {available}") from None
    usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not usable.get(resolved.type, False):
        raise ValueError(f"device {str(device)!r} is not available on this machine; available here: {available}")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist; available here: {available}")
    return resolved


@functools.lru_cache(maxsize=None)
def warm_up(device: torch.device) -> None:
    """Pay the process's one-time costs before any clock starts, once per process and device.

    The first optimizer a process builds imports ``torch._dynamo`` (seconds; ~10 s on a cold disk), and the
    first convolution and backward pass initialise their kernels. Timed after this, the first run of a process
    costs what the same run costs the second time. Touches no random number generator.
    """
    import torch._dynamo  # noqa: F401  (what the first optimizer would import inside the timer)

    w = torch.zeros(2, 1, 3, 3, device=device, requires_grad=True)
    optimizer = make_optimizer("adam", [w], lr=1e-3, weight_decay=0.0)
    schedule = make_schedule("onecycle", optimizer, lr=1e-3, total_steps=2)
    x = torch.zeros(2, 1, 4, 4, device=device)
    nn.functional.cross_entropy(nn.functional.conv2d(x, w).flatten(1), torch.zeros(2, dtype=torch.long,
                                                                                  device=device)).backward()
    optimizer.step()
    schedule.step()


class Callback:
    """Hooks called by :class:`Trainer`; override the ones you need. Each receives the trainer.

    A callback with state a resumed run needs defines ``state_dict() -> dict`` (tensors, lists, numbers, strings)
    and ``load_state_dict(state, trainer)``, called on resume once the model has the saved structure."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_epoch_begin(self, trainer: "Trainer") -> None: ...
    def on_step_end(self, trainer: "Trainer") -> None: ...
    def on_epoch_end(self, trainer: "Trainer") -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...


class EvaluateOn(Callback):
    """At every epoch end, the mean loss and the task's metric on ``loader`` in eval mode, added to the epoch's
    record as ``<name>_loss`` and ``<name>_<metric>`` (``<name>_acc`` for classification). The epoch's own
    ``train_acc`` is a running mean over batches taken in train mode while the weights moved; this measures the
    weights at the epoch's end (lesson 02: the premise).

        train_eval = EvaluateOn(DataLoader(data.train.dataset, batch_size=512), name="train_eval")

    Give it a loader of its own (not the training loader): iterating a shuffling loader would draw from its
    random generator and change the training's data order."""

    def __init__(self, loader, name: str = "train_eval"):
        self.loader, self.name = loader, name

    def on_epoch_end(self, trainer: "Trainer") -> None:
        loss, metric = trainer.evaluate(self.loader)
        trainer.history.epochs[-1].update({f"{self.name}_loss": loss, f"{self.name}_{trainer.task.metric}": metric})


@dataclasses.dataclass
class History:
    """What happened: one dict per finished epoch, and the loss of every step."""

    epochs: list[dict] = dataclasses.field(default_factory=list)
    step_loss: list[float] = dataclasses.field(default_factory=list)

    def column(self, key: str) -> list:
        return [e[key] for e in self.epochs]


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adam`` (the paper's: Adam, lr 2e-3, weight decay 5e-5), ``adamw`` or ``sgd`` (momentum 0.9)."""
    optimizers = {
        "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
    }
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {list(optimizers)}")
    return optimizers[name]()


def make_schedule(name: str, optimizer, lr: float, total_steps: int):
    """``constant``, ``onecycle`` (the paper's schedule in the sparse phase) or ``cosine``; stepped every batch."""
    total_steps = max(1, total_steps)
    schedules = {
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps),
    }
    if name not in schedules:
        raise ValueError(f"unknown schedule {name!r}; choose one of {list(schedules)}")
    return schedules[name]()


class Trainer:
    """Train ``model`` on ``data`` (a :class:`cropkit.tasks.data.Data` or a pair of loaders (train, test)).

    ``task``: the `cropkit.tasks.task.Task` (default: the data's, else classification); ``loss_fn`` overrides its
    loss. The test set is measured after every ``eval_every``-th epoch and after the last
    (``evaluate_every_epoch=False``: never); the other epochs' records have no ``test_*`` entries. Measuring draws
    from no generator the training uses, so the training and its final test values are the same whatever
    ``eval_every`` is."""

    def __init__(self, model: nn.Module, data, epochs: int, *, lr: float = 2e-3, weight_decay: float = 5e-5,
                 optimizer: str = "adam", schedule: str = "constant", callbacks: Iterable[Callback] = (),
                 device: str | torch.device | None = None, progress: bool = True, seed: int | None = 0,
                 loss_fn: Callable | None = None, evaluate_every_epoch: bool = True, eval_every: int = 1, task=None):
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0; got {epochs}")
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
            raise ValueError(f"eval_every must be an integer >= 1 (measure the test set every that many epochs); "
                             f"got {eval_every!r}")
        self.train_loader, self.test_loader = (data.train, data.test) if hasattr(data, "train") else data
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.epochs = epochs
        self.lr, self.weight_decay = lr, weight_decay
        self.optimizer_name, self.schedule_name = optimizer, schedule
        self.callbacks = list(callbacks)
        self.progress = progress
        self.seed = seed
        self.task = task or getattr(data, "task", None) or CLASSIFICATION
        self.loss_fn = loss_fn or (nn.CrossEntropyLoss() if self.task is CLASSIFICATION else self.task.loss_fn)
        self.evaluate_every_epoch, self.eval_every = evaluate_every_epoch, eval_every
        self.history = History()
        self.epoch = 0  # finished epochs
        self.step = 0  # finished optimizer steps
        self.epoch_step = 0  # finished optimizer steps of the running epoch (0 between epochs)
        self.stop = False
        self.last_loss = float("nan")
        self.optimizer = self.scheduler = None
        self.reset_optimizer(epochs)

    # -- the plan ------------------------------------------------------------------------------------------------
    def reset_optimizer(self, epochs: int | None = None, schedule: str | None = None) -> None:
        """Fresh optimizer and LR schedule over ``epochs`` more epochs (default: the remaining ones).

        Needed after a structured prune (the parameter tensors are new) and used to start the sparse phase
        with its own schedule. Sets ``self.epochs = self.epoch + epochs``. Called in the middle of an epoch (from
        ``on_step_end``), the running epoch counts as one of them and the schedule spans the steps actually left.
        """
        if epochs is not None:
            self.epochs = self.epoch + epochs
        if schedule is not None:
            self.schedule_name = schedule
        remaining = max(1, self.epochs - self.epoch)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.optimizer_name, params, self.lr, self.weight_decay)
        steps = remaining * len(self.train_loader) - self.epoch_step
        self.scheduler = make_schedule(self.schedule_name, self.optimizer, self.lr, steps)

    # -- state, between epochs ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything of the loop a resumed run needs, but the model: counters, plan, history, optimizer,
        schedule, the names of the optimized parameters (in the optimizer's order) and the RNG states."""
        history = dict(epochs=self.history.epochs, step_loss=torch.tensor(self.history.step_loss, dtype=torch.float64))
        return dict(epoch=self.epoch, step=self.step, epochs=self.epochs, stop=self.stop, schedule=self.schedule_name,
                    last_loss=self.last_loss, history=history,
                    parameters=self._optimized(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(), rng=rng_state(self.train_loader))

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; ``self.model`` must already have the saved tensors (names, shapes)."""
        self.epoch, self.step, self.epochs, self.stop = state["epoch"], state["step"], state["epochs"], state["stop"]
        self.epoch_step, self.last_loss = 0, state["last_loss"]
        self.history = History([dict(e) for e in state["history"]["epochs"]], state["history"]["step_loss"].tolist())
        self.reset_optimizer(schedule=state["schedule"])
        if self._optimized() != state["parameters"]:
            raise ValueError(f"the model's parameters {self._optimized()} are not those of the saved optimizer "
                             f"{state['parameters']}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], self.train_loader)

    def _optimized(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    # -- running ----------------------------------------------------------------------------------------------
    def _call(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One full step: forward, backward, optimizer step, schedule step. Returns the loss and the task's
        ``step_metric`` of the batch (NaN when the task has none)."""
        self.model.train()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        step_metric = self.task.step_metric
        return loss.item(), float("nan") if step_metric is None else step_metric(logits.detach(), y)

    @torch.no_grad()
    def evaluate(self, loader=None) -> tuple[float, float]:
        """Mean loss and the task's metric over ``loader`` (default: the test loader), in eval mode: accuracy for
        classification; a task with its own ``evaluate`` (control: episodes) is handed the model and loader."""
        loader = self.test_loader if loader is None else loader
        if self.task.evaluate is not None:
            return self.task.evaluate(self.model, loader, self.device)
        total_loss, total, count, metric_count = 0.0, 0, 0, 0
        with frozen(self.model):
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                logits = self.model(x)
                total_loss += self.loss_fn(logits, y).item() * len(y)
                batch_sum, batch_count = self.task.batch_metric(logits, y)
                total, metric_count = total + batch_sum, metric_count + batch_count
                count += len(y)
        if count == 0:
            raise ValueError("cannot evaluate on an empty loader")
        return total_loss / count, self.task.value(total / metric_count)

    def fit(self) -> History:
        """Train until ``self.epochs`` epochs are done (callbacks may move that target) or ``self.stop``."""
        from tqdm.auto import tqdm

        if self.seed is not None:
            seed_everything(self.seed)
        self._call("on_train_begin")  # a resuming checkpoint (the last callback) loads the saved state here
        bar = tqdm(total=self.epochs, initial=self.epoch, desc="epochs", unit="epoch", disable=not self.progress,
                   leave=False)
        while self.epoch < self.epochs and not self.stop:
            self._call("on_epoch_begin")
            if hasattr(self.train_loader, "bind"):  # on-policy data: collected with the current (maybe pruned) model
                self.train_loader.bind(self.model)
            start = time.perf_counter()
            losses, accs = [], []
            for x, y in self.train_loader:
                loss, acc = self.train_step(x, y)
                if not math.isfinite(loss):
                    raise DivergedError(
                        f"the training loss became {loss} in epoch {self.epoch + 1}, step {self.step + 1} (lr "
                        f"{self.optimizer.param_groups[0]['lr']:.3g}): training diverged; try a lower learning "
                        f"rate (lr={self.lr:g} was given)")
                losses.append(loss)
                accs.append(acc)
                self.step += 1
                self.epoch_step += 1
                self.last_loss = loss
                self.history.step_loss.append(loss)
                self._call("on_step_end")
            if not losses:
                raise ValueError("the training loader yielded no batches")
            self.epoch += 1
            self.epoch_step = 0
            metric = self.task.metric
            record = dict(epoch=self.epoch, train_loss=float(np.mean(losses)))
            if self.task.step_metric is not None:
                record[f"train_{metric}"] = self.task.value(float(np.mean(accs)))
            record.update(lr=self.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - start)
            if self._evaluates(self.epoch):
                record["test_loss"], record[f"test_{metric}"] = self.evaluate()
            self.history.epochs.append(record)
            self._call("on_epoch_end")  # may prune, raise self.epochs, or set self.stop
            bar.total = self.epochs
            bar.set_postfix({"loss": f"{record['train_loss']:.3f}",
                             metric: f"{record.get(f'test_{metric}', float('nan')):.3f}"})
            bar.update(1)
        bar.close()
        last = self.history.epochs[-1] if self.history.epochs else None
        if last is not None and self._evaluates(self.epochs) and "test_loss" not in last:  # stopped early
            last["test_loss"], last[f"test_{self.task.metric}"] = self.evaluate()
        self._call("on_train_end")
        return self.history

    def _evaluates(self, epoch: int) -> bool:
        """Whether the test set is measured after ``epoch``: every ``eval_every``-th epoch and the last one planned
        (a training that a callback stops earlier is measured where it stopped), unless evaluation is off."""
        return (self.evaluate_every_epoch and self.test_loader is not None
                and (epoch % self.eval_every == 0 or epoch >= self.epochs))


def fit(model: nn.Module, data, epochs: int, **kwargs) -> History:
    """Shortcut: ``Trainer(model, data, epochs, **kwargs).fit()``."""
    return Trainer(model, data, epochs, **kwargs).fit()
