"""What a method is handed: the run's data, settings, scoring batches and a trainer factory, and its bookkeeping."""
from __future__ import annotations

import functools
import warnings
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from cropkit.core import prune, sanity, scores
from cropkit.methods.options import SANITY_CHECKS
from cropkit.tasks import data as data_lib
from cropkit.tasks import models
from cropkit.tasks.task import CLASSIFICATION, Data
from cropkit.training import checkpoint as checkpoint_lib
from cropkit.training import loop as train

# The seed of a fresh draw is the run's seed + this: LTR's random-reinit control (`cropkit.methods.ltr`) and the
# reinit sanity check (`Context.prune`) draw the same weights.
REINIT_OFFSET = 10_000


class Context:
    """What a method needs (data, settings, scoring batches, a trainer factory) and the run's bookkeeping."""

    def __init__(self, cfg, dataset: Data, sparsity: float, seed: int, device: torch.device,
                 progress: bool, callbacks: Sequence[train.Callback] = (),
                 checkpoint: checkpoint_lib.CheckpointFile | None = None):
        self.cfg, self.data, self.sparsity, self.seed = cfg, dataset, sparsity, seed
        self.device, self.progress = device, progress
        self.callbacks = list(callbacks)  # the caller's (logging, tracking): after the method's own in every trainer
        self.history: list[dict] = []   # one record per epoch over all trainings, epochs numbered globally
        self.epochs_trained = 0
        self.trainings = 0
        self.prune_epoch: int | None = None
        self.forced: bool | None = None        # a method with a detector: whether its prune came at the cap
        self.forced_reason: str | None = None  # then the detector's warning
        self.checkpoint = checkpoint    # None: no checkpoints (cache=False)
        # what a method computes between trainings and needs later (LTR's θ_k): saved with every checkpoint
        self.state: dict = checkpoint.context_state if checkpoint is not None else {}
        self._trainers = 0              # trainers made so far: the number of the next training

    def bookkeeping(self) -> dict:
        """The run's bookkeeping and ``state``, for a checkpoint."""
        return dict(history=self.history, epochs_trained=self.epochs_trained, trainings=self.trainings,
                    prune_epoch=self.prune_epoch, forced=self.forced, forced_reason=self.forced_reason,
                    state=self.state)

    def restore(self, saved: dict) -> None:
        self.history = [dict(e) for e in saved["history"]]
        self.epochs_trained, self.trainings = saved["epochs_trained"], saved["trainings"]
        self.prune_epoch, self.state = saved["prune_epoch"], dict(saved["state"])
        self.forced, self.forced_reason = saved["forced"], saved["forced_reason"]

    def sparse_epochs(self, spent: int = 0) -> int:
        """The epochs of the sparse phase after ``spent`` epochs before the last cut: E, or with an equal budget
        (``total_epochs`` T) what is left of it, T − spent (the settings check that it is at least one)."""
        total = self.cfg.total_epochs
        return self.cfg.epochs if total is None else total - spent

    def build_model(self, seed: int | None = None) -> nn.Module:
        shape, classes = self.data.input_shape, self.data.num_classes
        model = models.build(self.cfg.model, shape, classes, width=self.cfg.width,
                             seed=self.seed if seed is None else seed)
        return model.to(self.device)

    @property
    def loss_fn(self):
        """The loss every score differentiates: the data's task's (`cropkit.tasks.task`; classification:
        cross-entropy)."""
        return getattr(self.data, "task", CLASSIFICATION).loss_fn

    @property
    def on_policy(self) -> bool:
        """Whether the data are what the network itself collects (control): scoring batches depend on the network."""
        return getattr(self.data, "on_policy", False)

    def batches_for(self, model: nn.Module) -> list:
        """The scoring batches to score ``model`` on: :attr:`batches`, except for on-policy data (control), where
        they are transitions ``model`` collects now (the same episode seeds every time)."""
        if self.on_policy:
            return self.data.scoring_batches(self.cfg.score_batches, self.cfg.batch_size, self.seed, model)
        return self.batches

    @functools.cached_property
    def batches(self) -> list:
        """The scoring batches: the first ``score_batches`` of a loader of their own over the training set, or what
        the data's own ``scoring_batches(n, batch_size, seed)`` hook gives (data without a training Dataset); for
        on-policy data, those the initial network (built with the run's seed) collects."""
        if self.on_policy:
            return self.batches_for(self.build_model())
        if getattr(self.data, "scoring_batches", None) is not None:
            return self.data.scoring_batches(self.cfg.score_batches, self.cfg.batch_size, self.seed)
        loader = DataLoader(self.data.train.dataset, batch_size=self.cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(self.seed))
        batches = data_lib.take(loader, self.cfg.score_batches)
        if len(batches) < self.cfg.score_batches:
            warnings.warn(f"score_batches={self.cfg.score_batches}, but the training set ({len(loader.dataset)} "
                          f"samples, batch size {self.cfg.batch_size}) has only {len(batches)} batch(es): scoring "
                          f"used {len(batches)}")
        return batches

    @property
    def example_inputs(self) -> torch.Tensor:
        """Two training inputs, for tracing channel dependencies and counting FLOPs."""
        if self.on_policy:  # no scoring episode needed to trace a network
            return self.data.example_inputs(2).to(self.device)
        return self.batches[0][0][:2].to(self.device)

    def trainer(self, model: nn.Module, epochs: int, schedule: str | None = None,
                callbacks: Sequence[train.Callback] = ()) -> train.Trainer:
        """A trainer with the run's settings; with checkpoints on, a `cropkit.training.checkpoint.Checkpoint` comes
        last."""
        c = self.cfg
        callbacks = [*callbacks, *self.callbacks]  # the caller's after the method's own
        if self.checkpoint is not None:  # last: a prune in another callback's on_epoch_end is in the saved state
            callbacks.append(checkpoint_lib.Checkpoint(self.checkpoint, self, self._trainers))
        self._trainers += 1
        return train.Trainer(model, self.data, epochs, lr=c.lr, weight_decay=c.weight_decay,
                             schedule=schedule or c.schedule, callbacks=callbacks,
                             device=self.device, progress=self.progress, seed=self.seed, eval_every=c.eval_every)

    def fit(self, trainer: train.Trainer) -> nn.Module:
        """Run ``trainer`` to the end, append its epochs to the history; returns the trained model. A resumed run
        skips the trainings that had finished before its checkpoint was written (their model is not trained)."""
        if self.checkpoint is not None and self.checkpoint.skips(trainer):
            return trainer.model
        trainer.fit()
        for record in trainer.history.epochs:
            self.history.append({**record, "epoch": self.epochs_trained + record["epoch"],
                                 "training": self.trainings})
        self.epochs_trained += trainer.epoch
        self.trainings += 1
        return trainer.model

    def pruned(self, trainer: train.Trainer | None = None, detector=None) -> None:
        """Record that the (last) prune happens now: at init of the next training, or after the running
        ``trainer``'s finished epochs; a ``detector`` (`cropkit.training.timing`) says whether it was forced at the
        cap."""
        self.prune_epoch = self.epochs_trained + (trainer.epoch if trainer is not None else 0)
        if detector is not None:
            self.forced, self.forced_reason = bool(detector.forced), detector.forced_reason

    def prune(self, model: nn.Module, criterion: str, sparsity: float | None = None, **structured) -> nn.Module:
        """Score ``model`` with ``criterion`` on the scoring batches and prune it to ``sparsity`` (default: the
        run's target): masks for a per-weight criterion, physical removal for a per-node one (every layer keeping
        at least ``layer_floor`` of its nodes).

        ``cfg.sanity`` (`cropkit.methods.options.SANITY`) ablates the prune as Frankle et al. (ICLR 2021) do; the
        default "none" prunes exactly as without it. "invert": the scores negated (`cropkit.core.sanity.invert`)
        before the usual top-k, so the lowest-scored weights or nodes are kept at the same budget. "shuffle": each
        layer's mask permuted (`sanity.shuffle_within_layers`), the weights as they were; structured, every node
        layer keeps as many nodes as the prune would have, chosen at random (`sanity.random_channels`), by the same
        surgery; both seeded by the run's seed. "reinit": the prune's masks on a fresh draw of the whole network
        (`build_model` with the seed + `REINIT_OFFSET`, as LTR's reinit control: biases and norms fresh too);
        structured, the smaller network drawn afresh in place with the zoo's initialisation
        (`sanity.redraw`, same seed), which a model that initialises itself (torchvision) cannot have."""
        sparsity = self.sparsity if sparsity is None else sparsity
        check, per_weight = self.cfg.sanity, criterion in scores.WEIGHT_SCORES
        if check == "reinit" and not per_weight:
            self.check_redraw(model)
        found = (scores.WEIGHT_SCORES if per_weight else scores.NODE_SCORES)[criterion](
            model, self.batches_for(model), loss_fn=self.loss_fn, seed=self.seed)
        if check == "invert":
            found = sanity.invert(found)
        if per_weight:
            pruned = prune.unstructured(model, found, sparsity)
            if check == "shuffle":
                return sanity.with_masks(pruned, sanity.shuffle_within_layers(prune.masks(pruned), self.seed))
            return sanity.with_masks(self._fresh_model(), prune.masks(pruned)) if check == "reinit" else pruned
        settings = {"min_fraction": self.cfg.layer_floor, **structured}
        if check == "shuffle":
            removed = prune.structured_plan(model, found, sparsity, self.example_inputs, **settings).removed
            kept = {name: n - len(removed.get(name, ())) for name, n in sanity.kept_nodes(model).items()}
            return sanity.random_channels(model, kept, self.example_inputs, seed=self.seed)
        pruned = prune.structured(model, found, sparsity, self.example_inputs, **settings)
        return sanity.redraw(pruned, self.seed + REINIT_OFFSET) if check == "reinit" else pruned

    def check_redraw(self, model: nn.Module) -> None:
        """A ValueError unless a structured prune of ``model`` can be re-initialised (``sanity="reinit"``)."""
        if sanity.initialises_itself(model):
            raise ValueError(f"sanity='reinit' re-initialises a structurally pruned network with the zoo's "
                             f"initialisation, but model {self.cfg.model!r} initialises itself; choose another "
                             f"sanity check {[c for c in SANITY_CHECKS if c != 'reinit']} or a zoo model")

    def _fresh_model(self) -> nn.Module:
        """The network drawn afresh (seed + `REINIT_OFFSET`), the random number generators left as they were."""
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            return self.build_model(seed=self.seed + REINIT_OFFSET)
