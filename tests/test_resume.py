"""Runs that resume (`cropkit.training.checkpoint`): a run killed with SIGKILL right after an epoch's checkpoint and run
again must end exactly where the uninterrupted run ends (the same tensors bit for bit, masks included, the same
accuracy and history); a checkpoint that is unreadable, of another configuration or does not fit is never used."""
from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cropkit
from cropkit.core import masks, prune
from cropkit.core.layers import prunable_layers
from cropkit.experiments import runs
from cropkit.methods import gates
from cropkit.tasks import models
from cropkit.training import checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(data="digits", model="cnn", width=0.25, limit=256, batch_size=64, epochs=2, seed=0, progress=False)

# (case, method, options, (training, epoch) whose checkpoint is the last one before the kill)
CASES = [
    ("earlycrop-u dense phase", "earlycrop-u", dict(max_dense_epochs=4), (0, 2)),
    ("earlycrop-u after the prune", "earlycrop-u", dict(max_dense_epochs=3), (0, 4)),
    ("earlycrop-s after the surgery", "earlycrop-s", dict(max_dense_epochs=3), (0, 4)),
    ("ltr round 2", "ltr", dict(ltr_rounds=2, rewind_epoch=1), (2, 1)),
    ("earlybird penalty on", "earlybird", dict(max_dense_epochs=3, eb_window=2), (0, 1)),
    ("gatedecorators between ticks", "gatedecorators", dict(ticks=2), (0, 1)),
    # on-policy data: the stream of training episodes (the loader's epoch count) is part of the saved state
    ("earlycrop-u on cartpole", "earlycrop-u", dict(data="cartpole", model="policy", limit=50, batch_size=4,
                                                    max_dense_epochs=4), (0, 2)),
]

# One Python start for all cases (importing torch costs seconds): this process imports and warms up once, then
# forks a process per case, which runs cropkit.run and is killed with SIGKILL right after the checkpoint of the
# case's epoch is on disk. It prints {case: the signal that ended that process}.
KILLER = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import cropkit
from cropkit.training import checkpoint
from cropkit.core.layers import prunable_layers

cases, ended = json.loads(sys.argv[1]), {}
cropkit.train.warm_up(torch.device("cpu"))
write = checkpoint.save
for case, (method, options, target, cache_dir) in cases.items():
    pid = os.fork()
    if pid == 0:
        def save(path, state, target=tuple(target)):
            write(path, state)
            if (state["training"], state["epoch"]) == target:
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.save = save
        cropkit.run(method, cache_dir=cache_dir, **options)
        os._exit(3)  # never killed: the test fails on this
    _, status = os.waitpid(pid, 0)
    ended[case] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
print(json.dumps(ended))
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory, one_thread) -> dict:
    """Every case run in a process of its own and killed with SIGKILL, and (meanwhile, in this process) run
    uninterrupted without a cache: {case: (cache dir, signal, stderr, reference result, its final tensors)}."""
    base = tmp_path_factory.mktemp("killed")
    cases = {case: (method, {**SMALL, **options}, target, str(base / case.replace(" ", "_")))
             for case, method, options, target in CASES}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", KILLER, json.dumps(cases)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        references = {case: run_keeping_model(monkeypatch, method, cache=False, **options)
                      for case, (method, options, _, _) in cases.items()}
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
    ended = json.loads(out.strip().splitlines()[-1])
    return {case: (Path(cases[case][3]), ended[case], err[-2000:], *references[case]) for case in cases}


def run_keeping_model(monkeypatch, method: str, **kw) -> tuple[cropkit.Result, dict[str, torch.Tensor]]:
    """`cropkit.run`, and a copy of every tensor of the final model (masks included)."""
    finals = []
    measure = runs._measure

    def keep(ctx, final, *rest):
        finals.append({k: v.detach().clone() for k, v in final.state_dict().items()})
        return measure(ctx, final, *rest)

    with monkeypatch.context() as m:
        m.setattr(runs, "_measure", keep)
        result = cropkit.run(method, **kw)
    return result, finals[-1] if finals else None


def assert_same_run(resumed: cropkit.Result, model: dict, reference: cropkit.Result, reference_model: dict) -> None:
    assert model.keys() == reference_model.keys()
    different = [k for k in model if not torch.equal(model[k], reference_model[k])]
    assert not different, f"tensors differ after resuming: {different}"
    mask_keys = [k for k in model if k.endswith(".mask")]
    assert all(model[k].dtype == torch.bool for k in mask_keys)

    def without_seconds(history):  # NaN (control has no test loss) as a string, so that equal means equal
        return [{k: "nan" if v != v else v for k, v in e.items() if k != "seconds"} for e in history]

    assert without_seconds(resumed.history) == without_seconds(reference.history)
    assert resumed.test_metric == reference.test_metric
    assert resumed.test_acc == reference.test_acc or resumed.metric != "acc"
    assert (resumed.epochs_trained, resumed.prune_epoch) == (reference.epochs_trained, reference.prune_epoch)
    assert resumed.weight_sparsity == reference.weight_sparsity and resumed.params == reference.params
    assert resumed.warnings == reference.warnings
    assert (resumed.forced, resumed.forced_reason) == (reference.forced, reference.forced_reason)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="SIGKILL and fork are POSIX; the other tests cover Windows")
@pytest.mark.parametrize("case, method, options, target", CASES, ids=[c[0] for c in CASES])
def test_a_run_killed_after_any_epoch_resumes_to_the_uninterrupted_result(killed, monkeypatch, one_thread, case,
                                                                          method, options, target):
    cache_dir, ended_by, stderr, reference, reference_model = killed[case]
    assert ended_by == signal.SIGKILL, f"the run was not killed (signal or -exit code {ended_by}):\n{stderr}"
    [ckpt] = list(cache_dir.glob("*.ckpt.pt"))
    assert not list(cache_dir.glob("*.json")) and not list(cache_dir.glob(".*.tmp"))
    saved = torch.load(ckpt, weights_only=True)  # tensors, lists, numbers, strings only
    assert (saved["training"], saved["epoch"]) == target

    kw = {**SMALL, **options}
    resumed, model = run_keeping_model(monkeypatch, method, cache_dir=cache_dir, **kw)
    assert not resumed.from_cache
    assert not ckpt.exists() and ckpt.with_name(ckpt.name.replace(".ckpt.pt", ".json")).exists()
    assert resumed.epochs_trained > target[1]
    assert_same_run(resumed, model, reference, reference_model)
    if method == "earlycrop-u" and target[1] > options["max_dense_epochs"]:
        assert any(k.endswith(".mask") for k in model)      # the masks came back from the checkpoint
    if method == "earlycrop-s":
        assert resumed.node_sparsity > 0                    # and the shrunk shapes


class Interrupted(Exception):
    """Stands in for a kill inside the test process: the checkpoint on disk is all that is left of the run."""


def interrupt_after(monkeypatch, method: str, target: tuple[int, int], **kw) -> Path:
    """Run until the checkpoint of ``target`` is written, abandon the run; the checkpoint's path."""
    write = checkpoint.save

    def save(path, state):
        write(path, state)
        if (state["training"], state["epoch"]) == target:
            raise Interrupted

    with monkeypatch.context() as m, pytest.raises(Interrupted):
        m.setattr(checkpoint, "save", save)
        cropkit.run(method, **kw)
    [ckpt] = list(Path(kw["cache_dir"]).glob("*.ckpt.pt"))
    return ckpt


def test_a_run_without_cache_neither_reads_nor_writes_checkpoints(tmp_path, monkeypatch, one_thread):
    ckpt = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path, **SMALL)
    saved = ckpt.read_bytes()
    result = cropkit.run("dense", cache=False, cache_dir=tmp_path, **SMALL)
    assert result.epochs_trained == 2 and len(result.history) == 2  # trained from the start
    assert ckpt.read_bytes() == saved and [p.name for p in tmp_path.iterdir()] == [ckpt.name]


def test_an_unreadable_checkpoint_warns_and_the_run_starts_over(tmp_path, monkeypatch, one_thread):
    ckpt = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path, **SMALL)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="(?s)cannot be read.*starts over"):
        result, model = run_keeping_model(monkeypatch, "dense", cache_dir=tmp_path, **SMALL)
    assert_same_run(result, model, *run_keeping_model(monkeypatch, "dense", cache=False, **SMALL))
    assert not ckpt.exists()


def test_a_checkpoint_of_another_configuration_is_never_used(tmp_path, monkeypatch, one_thread):
    other = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path / "a", **{**SMALL, "lr": 1e-3})
    ckpt = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path / "b", **SMALL)
    shutil.copy(other, ckpt)  # the other run's checkpoint under this run's name
    with pytest.warns(UserWarning, match="another configuration"):
        result, model = run_keeping_model(monkeypatch, "dense", cache_dir=tmp_path / "b", **SMALL)
    assert_same_run(result, model, *run_keeping_model(monkeypatch, "dense", cache=False, **SMALL))


def test_a_checkpoint_that_does_not_fit_the_run_warns_and_the_run_starts_over(tmp_path, monkeypatch, one_thread):
    ckpt = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path, **SMALL)
    saved = torch.load(ckpt, weights_only=True)
    saved["callbacks"].append(dict(kind="Snapshot", state=None))  # written by some other code
    checkpoint.save(ckpt, saved)
    with pytest.warns(UserWarning, match="(?s)does not fit this run.*starts over"):
        result, model = run_keeping_model(monkeypatch, "dense", cache_dir=tmp_path, **SMALL)
    assert_same_run(result, model, *run_keeping_model(monkeypatch, "dense", cache=False, **SMALL))


@pytest.mark.parametrize("name, shape, width", [("cnn", (1, 8, 8), 0.5), ("resnet18", (3, 8, 8), 0.125)])
def test_conform_gives_a_fresh_model_the_saved_structure(name, shape, width):
    """Shrunk by structured surgery, then masked, then gated: a freshly built model takes that structure and
    computes the same function."""
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    batches = [(x, torch.zeros(4, dtype=torch.long))]
    pruned = models.build(name, shape, 10, width=width, seed=0).eval()
    node_scores = {n: torch.rand(m.weight.shape[0], generator=torch.Generator().manual_seed(1))
                   for n, m in list(prunable_layers(pruned))[:-1]}
    prune.structured(pruned, node_scores, 0.5, x)
    weight_scores = {f"{n}.weight": torch.rand(m.weight.shape) for n, m in prunable_layers(pruned)}
    prune.unstructured(pruned, weight_scores, 0.3)
    gates.GateDecorator(pruned, batches)
    fresh = models.build(name, shape, 10, width=width, seed=1).eval()
    checkpoint.conform(fresh, pruned.state_dict(), [n for n, _ in pruned.named_parameters()])
    assert [(n, p.shape) for n, p in fresh.named_parameters()] == [(n, p.shape) for n, p in pruned.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(masks.masks(fresh).values(), masks.masks(pruned).values()))
    for module in fresh.modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.out_channels == module.weight.shape[0]
    gates.GateDecorator(fresh, batches)  # the gates (adopted) act again
    torch.testing.assert_close(fresh(x), pruned(x), rtol=0, atol=0)


def test_conform_refuses_a_state_of_another_architecture():
    model = models.build("cnn", (1, 8, 8), 10, width=0.25, seed=0)
    with pytest.raises(checkpoint.CheckpointError, match="no module"):
        checkpoint.conform(model, {"nowhere.weight": torch.zeros(1)}, ["nowhere.weight"])


def test_batchnorm_penalty_is_on_after_a_restore_exactly_when_it_was_on_before():
    """The penalty is a gradient hook on γ: restored into a model whose γ may be new tensors, it must act once when
    it was on and not at all when a prune had ended it."""
    from types import SimpleNamespace

    from cropkit.training.callbacks import BatchNormL1

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    penalty = BatchNormL1(model, 0.5)
    gamma = model[1].weight

    def penalty_gradient():
        gamma.grad = None
        (0 * model(torch.randn(2, 1, 4, 4)).sum()).backward()
        return gamma.grad

    assert torch.equal(penalty_gradient(), torch.full((3,), 0.5))
    penalty.load_state_dict(dict(active=True), SimpleNamespace(model=model))
    assert torch.equal(penalty_gradient(), torch.full((3,), 0.5))  # once, not twice
    penalty.load_state_dict(dict(active=False), SimpleNamespace(model=model))
    assert torch.equal(penalty_gradient(), torch.zeros(3)) and penalty.state_dict() == dict(active=False)


def test_a_trainer_continued_from_its_state_dict_ends_where_the_uninterrupted_one_ends(tmp_path):
    """The loop alone: shuffled batches (the loader's generator), dropout (torch's generator) and a one-cycle
    schedule, stopped after epoch 2 of 4, saved, loaded with weights_only into a fresh trainer and model."""
    from torch.utils.data import DataLoader, TensorDataset

    from cropkit.training.loop import Trainer

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))

    class Draws(cropkit.train.Callback):  # Python's and NumPy's generators, seen through the history
        def on_epoch_end(self, t):
            t.history.epochs[-1].update(python=random.random(), numpy=float(np.random.rand()))

    def trainer(epochs):
        loaders = (DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1)),
                   DataLoader(data, batch_size=64))
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
        return Trainer(model, loaders, epochs, schedule="onecycle", progress=False, device="cpu", callbacks=[Draws()])

    whole = trainer(4)
    whole.fit()
    first = trainer(4)
    first.epochs = 2  # stops after epoch 2, with the schedule of 4 epochs
    first.fit()
    first.epochs = 4
    torch.save(dict(model=first.model.state_dict(), trainer=first.state_dict()), tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    second = trainer(4)
    second.model.load_state_dict(saved["model"])

    class Resume(cropkit.train.Callback):
        def on_train_begin(self, t):
            t.load_state_dict(saved["trainer"])

    second.callbacks.append(Resume())
    second.fit()
    assert all(torch.equal(a, b) for a, b in zip(second.model.state_dict().values(), whole.model.state_dict().values()))
    assert second.history.step_loss == whole.history.step_loss and second.epoch == 4
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in second.history.epochs] == \
        [{k: v for k, v in e.items() if k != "seconds"} for e in whole.history.epochs]


def test_a_run_that_diverges_leaves_no_checkpoint(tmp_path, monkeypatch, one_thread):
    write = checkpoint.save

    def save(path, state):  # the loss becomes NaN right after epoch 1's checkpoint
        write(path, state)
        raise cropkit.train.DivergedError("the training loss became nan")

    monkeypatch.setattr(checkpoint, "save", save)
    with pytest.raises(cropkit.train.DivergedError):
        cropkit.run("dense", cache_dir=tmp_path, **SMALL)
    assert not list(tmp_path.iterdir())


class FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left: a write beyond them fails as the OS says it (ENOSPC)."""

    room = 4096

    def write(self, data) -> int:
        if self.tell() + memoryview(data).nbytes > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return super().write(data)


def test_a_full_disk_while_checkpointing_warns_and_the_run_goes_on(tmp_path, monkeypatch, one_thread):
    """torch.save reports the failed write as a RuntimeError ("unexpected pos"), not as the OSError it was."""
    monkeypatch.setattr(checkpoint, "open", lambda file, mode: FullDisk(file, mode), raising=False)
    with pytest.warns(UserWarning, match=r"(?s)checkpoint .*\.ckpt\.pt could not be written.*disk may be full"):
        result = cropkit.run("dense", cache_dir=tmp_path, **SMALL)
    assert result.epochs_trained == 2 and any("disk may be full" in w for w in result.warnings)
    assert [p.suffix for p in tmp_path.iterdir()] == [".json"]  # cached; no checkpoint, no temporary file
    monkeypatch.undo()
    assert cropkit.run("dense", cache_dir=tmp_path, **SMALL).from_cache


def test_a_disk_that_fills_mid_run_leaves_the_last_checkpoint_to_resume_from(tmp_path, monkeypatch, one_thread):
    """The first checkpoint fits, the second does not, nor does the result: the result is still returned, and the
    run started again (the disk freed) resumes from the first checkpoint to the uninterrupted result."""
    writes = []

    def open_(file, mode):
        writes.append(file)
        return FullDisk(file, mode) if len(writes) > 1 else io.FileIO(file, mode)

    def store(path, result):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint, "open", open_, raising=False)
    monkeypatch.setattr(runs, "store", store)
    with pytest.warns(UserWarning) as caught:
        first = cropkit.run("dense", cache_dir=tmp_path, **SMALL)
    messages = " | ".join(str(w.message) for w in caught)
    assert "disk may be full" in messages and "could not be cached" in messages
    [ckpt] = list(tmp_path.iterdir())
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    resumed, model = run_keeping_model(monkeypatch, "dense", cache_dir=tmp_path, **SMALL)
    reference, reference_model = run_keeping_model(monkeypatch, "dense", cache=False, **SMALL)
    assert resumed.test_acc == first.test_acc
    resumed.warnings = reference.warnings  # the disk's warning belongs to the first segment
    assert_same_run(resumed, model, reference, reference_model)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_killed_writers_are_removed_when_the_run_starts(tmp_path, one_thread):
    _, config = runs.configuration("dense", **{k: v for k, v in SMALL.items() if k != "progress"})
    ckpt = checkpoint.path_for(cropkit.results.cache_path(tmp_path, config))
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / f".{ckpt.name}.{_dead_pid()}.tmp"         # a writer killed mid-write, long ago
    live = tmp_path / f".{ckpt.name}.{os.getppid()}.tmp"         # a writer still running
    recent = tmp_path / f".{ckpt.name}.{_dead_pid()}.tmp"        # just written: maybe by another machine's process
    other = tmp_path / f".other.ckpt.pt.{_dead_pid()}.tmp"       # another run's
    for path in (stale, live, recent, other):
        path.write_bytes(b"half a checkpoint")
    hour_ago = time.time() - 3600
    for path in (stale, live, other):
        os.utime(path, (hour_ago, hour_ago))
    cropkit.run("dense", cache_dir=tmp_path, **SMALL)
    assert not stale.exists() and live.exists() and recent.exists() and other.exists()


class Counter(cropkit.train.Callback):
    """A user's stateful callback; ``broken`` stands for a newer version of it that cannot read the old state."""

    def __init__(self, broken: bool = False):
        self.epochs, self.broken = [], broken

    def on_epoch_end(self, trainer) -> None:
        self.epochs.append(trainer.epoch)

    def state_dict(self) -> dict:
        return dict(epochs=self.epochs)

    def load_state_dict(self, state: dict, trainer) -> None:
        self.epochs = list(state["epochs"]) + [state["epochs"][3]] if self.broken else list(state["epochs"])


def _wider(saved: dict, tmp_path: Path, monkeypatch) -> dict:
    """The checkpoint of the same run on a model twice as wide, under this run's configuration."""
    other = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path / "wide", callbacks=[Counter()],
                            **{**SMALL, "width": 0.5})
    return {**torch.load(other, weights_only=True), "config": saved["config"]}


def _narrow_norm(saved: dict, *_) -> dict:
    model = dict(saved["model"])
    for key in ("1.weight", "1.bias", "1.running_mean", "1.running_var"):  # 8 channels of conv 0, 3 of its norm
        model[key] = model[key][:3]
    return {**saved, "model": model}


UNFIT = {  # a checkpoint of this run's configuration that torch loads, but that does not fit the run
    "another model's tensors": _wider,
    "a tensor of another rank": lambda s, *_: {**s, "model": {**s["model"], "0.weight": s["model"]["0.weight"][0]}},
    "a norm narrower than its layer": _narrow_norm,
    "a training the run never reaches": lambda s, *_: {**s, "training": 5},
    "seconds that are not a number": lambda s, *_: {**s, "seconds": "12 s"},
    "a callback that cannot load its state": lambda s, *_: s,
}


@pytest.mark.parametrize("case", UNFIT)
def test_a_checkpoint_that_loads_but_does_not_fit_is_set_aside_and_the_run_starts_over(tmp_path, monkeypatch,
                                                                                       one_thread, case):
    ckpt = interrupt_after(monkeypatch, "dense", (0, 1), cache_dir=tmp_path, callbacks=[Counter()], **SMALL)
    checkpoint.save(ckpt, UNFIT[case](torch.load(ckpt, weights_only=True), tmp_path, monkeypatch))
    broken = case == "a callback that cannot load its state"
    with pytest.warns(UserWarning, match=r"(?s)checkpoint .*(does not fit|not a cropkit checkpoint).*starts over"):
        result, model = run_keeping_model(monkeypatch, "dense", cache_dir=tmp_path, callbacks=[Counter(broken)],
                                          **SMALL)
    assert_same_run(result, model, *run_keeping_model(monkeypatch, "dense", cache=False, **SMALL))
    assert not ckpt.exists()
    assert cropkit.run("dense", cache_dir=tmp_path, **SMALL).from_cache  # the next run replays the cached result
