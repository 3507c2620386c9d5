"""Experiment tracking: a TensorBoard callback that logs what a run does, epoch by epoch (offline, to files).

    cropkit.run("earlycrop-u", callbacks=[cropkit.training.tracking.TensorBoard("outputs/tb")])
    cropkit.compare(["dense", "earlycrop-u"], callbacks=[cropkit.training.tracking.TensorBoard("outputs/tb")])
    # then: tensorboard --logdir outputs/tb     (in JupyterLab: %load_ext tensorboard, %tensorboard --logdir outputs/tb)

Every run gets a sub-folder of its own, ``<method>-<data>-<model>-p<sparsity>-s<seed>``, and at the end of every
epoch, at the run's global epoch (counted across all its trainings: LTR's rounds, a dense then a sparse phase):

| tag                              | what                                                                  |
|----------------------------------|-----------------------------------------------------------------------|
| train/loss, train/acc            | the epoch's running means over batches (the history's train_loss/acc) |
| test/loss, test/acc              | the test set at the epoch's end                                       |
| lr                               | the learning rate after the epoch's last step                         |
| detector/distance                | EarlyCroP's Δ_t = ‖θ_t − θ₀‖² (seed rule) or d_t (reference rule)     |
| detector/ratio                   | its test ratio r_t, compared with τ (Rachwan et al. 2022, §3.3)       |
| sparsity/weight, sparsity/node   | of the network at the epoch's end, against the dense model of the run |

The detector's values appear for the epochs in which the EarlyCroP detector was fed
(`cropkit.training.callbacks.DetectorCallback`: until its prune replaces the network; with ``detect_every_steps`` the
epoch's last value). The sparsities are measured after the method's own callbacks, so the
epoch at whose end a method prunes already shows the pruned network. A cached result replays without training,
so it logs nothing (``cache=False`` to log it again: that writes a second event file into the same folder).
"""
from __future__ import annotations

from pathlib import Path

from cropkit.core import measure
from cropkit.paths import unwritable
from cropkit.training.callbacks import DetectorCallback
from cropkit.training.loop import Callback
from cropkit.training.timing import EarlyCroPDetector


def run_name(config: dict) -> str:
    """The sub-folder of a run: ``<method>-<data>-<model>-p<sparsity>-s<seed>``."""
    return f"{config['method']}-{config['data']}-{config['model']}-p{config['sparsity']:g}-s{config['seed']}"


def _detector(trainer) -> EarlyCroPDetector | None:
    """The EarlyCroP detector among the trainer's callbacks (None if the method has none)."""
    for callback in trainer.callbacks:
        if isinstance(callback, DetectorCallback) and isinstance(callback.detector, EarlyCroPDetector):
            return callback.detector
    return None


class TensorBoard(Callback):
    """Logs every epoch of a run to ``log_dir/<run>`` with ``torch.utils.tensorboard.SummaryWriter`` (see the
    module docstring for the tags). Give it to `cropkit.run`, `cropkit.compare` or `cropkit.sweep` as
    ``callbacks=[TensorBoard(log_dir)]``; one instance serves any number of runs, one after the other. A folder it
    cannot write into is a ``ValueError`` here, when it is made (the folder is created if need be). It holds
    no open file between runs, so it can be sent to compare's worker processes and to sweep jobs."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir).expanduser().absolute()  # a sweep's job may start in another folder
        reason = unwritable(self.log_dir, folder=True)  # before any run starts (or any job is submitted)
        if reason:
            raise ValueError(f"TensorBoard cannot write into {self.log_dir}: {reason}")
        self.writer = self.ctx = None
        self.reference = None      # the run's dense model, on the CPU: what the sparsities are measured against
        self._detector_epochs = 0  # detector updates already logged

    def on_run_begin(self, config: dict, ctx) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir / run_name(config)))
        self.ctx = ctx  # its epochs_trained: the epochs of the run's finished trainings, the global step's offset
        self.reference = ctx.build_model().cpu()  # rebuilt with the run's seed, as the result's columns are

    def on_run_end(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = self.ctx = self.reference = None

    def __getstate__(self) -> dict:  # what goes to a worker process: the folder, never an open writer
        return {"log_dir": self.log_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["log_dir"])

    def on_train_begin(self, trainer) -> None:
        if self.writer is None:
            raise ValueError("TensorBoard logs runs: give it to cropkit.run / compare / sweep as callbacks=[...], "
                             "not to a Trainer of your own")
        self._detector_epochs = 0

    def on_epoch_end(self, trainer) -> None:
        step = self.ctx.epochs_trained + trainer.epoch  # as the run's history numbers its epochs
        record = trainer.history.epochs[-1]
        scalars = {"train/loss": record["train_loss"], "train/acc": record["train_acc"], "lr": record["lr"],
                   "test/loss": record.get("test_loss"), "test/acc": record.get("test_acc")}
        detector = _detector(trainer)
        if detector is not None and detector.epoch > self._detector_epochs:  # fed this epoch (its last value)
            self._detector_epochs = detector.epoch
            scalars["detector/distance"] = detector.history[-1]
            if detector.ratio_epochs and detector.ratio_epochs[-1] == detector.epoch:
                scalars["detector/ratio"] = detector.ratios[-1]
        scalars["sparsity/weight"] = measure.weight_sparsity(trainer.model, reference=self.reference)
        scalars["sparsity/node"] = measure.node_sparsity(trainer.model, reference=self.reference)
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, global_step=step)

    def on_train_end(self, trainer) -> None:
        self.writer.flush()
