"""Where a number was measured, and what it emitted: the device's name, the machine, and codecarbon's CO₂ estimate."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch


@contextlib.contextmanager
def stderr_into(path: str | Path):
    """This process's standard error (file descriptor 2: C++ chatter too, and the processes started meanwhile)
    appended to ``path`` for the block."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_stderr():
    """Silence C++-level chatter on file descriptor 2 (the profiler's start/stop lines) for the block."""
    return stderr_into(os.devnull)


class Emissions(contextlib.AbstractContextManager):
    """g CO₂eq of the enclosed block, from codecarbon's offline tracker (no network, quiet).

    On a CPU-only machine codecarbon estimates power from the CPU's TDP (or a default) rather than reading a
    meter: treat the number as an estimate. ``.grams`` holds the result after the block (``nan`` if codecarbon
    could not run, with the reason in ``.error``).
    """

    def __init__(self, country_iso_code: str = "USA", enabled: bool = True):
        self.country_iso_code, self.enabled = country_iso_code, enabled
        self.grams, self.error, self._tracker, self._dir = float("nan"), None, None, None

    def __enter__(self):
        if not self.enabled:
            self.error = "disabled"
            return self
        try:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)  # after import: codecarbon sets its own level

            self._dir = tempfile.mkdtemp(prefix="cropkit-codecarbon-")
            self._tracker = OfflineEmissionsTracker(country_iso_code=self.country_iso_code, log_level="error",
                                                    save_to_file=False, output_dir=self._dir,
                                                    measure_power_secs=15, tracking_mode="process")
            with quiet_stderr():
                self._tracker.start()
        except Exception as err:  # codecarbon is an estimate; never let it break a run
            self.error, self._tracker = f"{type(err).__name__}: {err}", None
        return self

    def __exit__(self, *exc):
        if self._tracker is not None:
            try:
                with quiet_stderr():
                    kg = self._tracker.stop()
                self.grams = float(kg) * 1000.0 if kg is not None else float("nan")
            except Exception as err:
                self.error = f"{type(err).__name__}: {err}"
        if self._dir is not None:  # codecarbon's output folder (it writes nothing there): one per run, so removed
            shutil.rmtree(self._dir, ignore_errors=True)
        return False


def device_name(device: str | torch.device = "cpu") -> str:
    """The model of the processor behind ``device``: the GPU's name, or the CPU's from ``/proc/cpuinfo``."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def describe() -> str:
    """A one-line description of where numbers were measured (timings always say where they ran)."""
    if torch.cuda.is_available():
        return f"GPU {device_name('cuda')} · torch {torch.__version__}"
    return f"CPU {device_name('cpu')} · {torch.get_num_threads()} threads · torch {torch.__version__}"


def allocated_cpus() -> int | None:
    """The CPUs SLURM gave this job (``--cpus-per-task``, else all it holds on this node); None outside SLURM.
    torch would otherwise start a thread per core of the whole node and oversubscribe the jobs sharing it."""
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def allocation() -> dict:
    """What a SLURM job runs on, for its result: the CPUs allocated (``cpus_per_task``) and the job's id (``12_3``:
    task 3 of array 12); None for both outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return dict(cpus_per_task=None, slurm_job=None)
    array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return dict(cpus_per_task=allocated_cpus(),
                slurm_job="_".join(array) if all(array) else os.environ["SLURM_JOB_ID"])
