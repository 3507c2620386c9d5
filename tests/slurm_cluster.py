"""A single-node SLURM cluster for tests, started from nothing in a temporary folder and stopped by PID.

    with slurm_cluster.running(tmp_path) as cluster:   # munged, slurmctld and slurmd; `sinfo` shows the node idle
        subprocess.run(["sbatch", ...], env=cluster.env())

Debian's ``slurm-wlm`` and ``munge`` (installed with apt when missing: `install`). Everything the daemons write — a
fresh munge key, munged's socket, the state, spool, logs and PID files, the ``slurm.conf`` — lives in the folder,
so it clashes with nothing on the machine: free ports, munged on its own socket (``AuthInfo=socket=...``), the node
as ``slurmd -C`` reports it (its real CPUs and memory) at 127.0.0.1, one default partition ``debug``, accounting off
(``sacct`` answers "accounting storage is disabled", as on many small clusters). The daemons run in the foreground
as this process's children (as root: ``SlurmUser=root``) and get SIGTERM should this process die. On exit every job
is cancelled, the daemons stopped, then whatever is left of the cluster (`Cluster.processes`: ``slurmstepd``, the
jobs) killed by its PID. README "Try the cluster path on one machine" gives the same recipe as shell commands.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
SLURM_PROCESSES = {*DAEMONS, "slurmscriptd", "slurmstepd"}  # names in /proc/<pid>/comm
PARTITION = "debug"
# A requeued job waits cred_expire + 1 s before it may start again (Slurm's default: 120 s); a few seconds suffice
# on one node, where a job step's credential is used within a second of being made.
CRED_EXPIRE_S = 5


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message says why (and what the daemons logged)."""


def unavailable() -> str | None:
    """Why this machine cannot run the cluster at all, or None."""
    if os.geteuid() != 0:
        return "starting munged, slurmctld and slurmd as SlurmUser=root needs root (CI runs as root)"
    if not all(shutil.which(d) for d in DAEMONS) and not shutil.which("apt-get"):
        return f"{' and '.join(PACKAGES)} are not installed and there is no apt-get to install them"
    return None


def install() -> None:
    """apt-get install slurm-wlm munge, unless their daemons are already on the PATH (as `./kit test` does)."""
    if all(shutil.which(d) for d in DAEMONS):
        return
    apt = ["apt-get", "install", "-y", "-qq", *PACKAGES]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(apt, env=env, capture_output=True).returncode != 0:  # the package lists may be missing
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        done = subprocess.run(apt, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterError(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for s in sockets:
            stack.enter_context(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def node_line() -> str:
    """This machine as a slurm.conf node: ``slurmd -C``'s first line (name, CPUs, sockets, cores, real memory)."""
    described = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    if not described or not described[0].startswith("NodeName="):
        raise ClusterError(f"`slurmd -C` did not describe this node: {described}")
    return f"{described[0]} NodeAddr=127.0.0.1 State=UNKNOWN"


def slurm_conf(folder: Path, node: str, ports: list[int]) -> str:
    """The cluster's slurm.conf: one node, one default partition, no accounting, no cgroups, quick requeues."""
    host = node.split()[0].removeprefix("NodeName=")
    return "\n".join([
        "ClusterName=cropkit-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge.socket'},cred_expire={CRED_EXPIRE_S}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SchedulerType=sched/builtin",
        "SchedulerParameters=sched_interval=1",  # a requeued job's begin time passes unannounced: look every second
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",  # one CPU per job unless it asks for more: jobs share the node
        "ReturnToService=2",
        "KillWait=2",  # SIGTERM, then SIGKILL 2 s later (submitit's jobs ignore SIGTERM)
        "MinJobAge=600",  # finished jobs stay in squeue for 10 minutes
        node,
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _die_with_parent() -> None:
    """In the daemon's process, before exec: SIGTERM when the test process dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclasses.dataclass
class Cluster:
    folder: Path
    conf: Path
    daemons: dict[str, subprocess.Popen] = dataclasses.field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with ``SLURM_CONF`` pointing at this cluster (for sbatch, squeue, scontrol, submitit)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def logs(self, lines: int = 15) -> str:
        """The last lines of every daemon's log (what a failed start prints)."""
        out = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.folder / name
            if path.exists() and path.read_text().strip():
                out.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(out)

    def _start(self, name: str, *command: str) -> None:
        with open(self.folder / f"{name}.out", "w") as out:
            self.daemons[name] = subprocess.Popen(command, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [name for name, p in self.daemons.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not after {timeout:.0f} s"
                raise ClusterError(f"the test cluster did not start ({what}: {why})\n{self.logs()}")
            time.sleep(0.2)

    def start(self, timeout: float = 30) -> None:
        """munged, then slurmctld and slurmd; returns once ``sinfo`` shows the node idle (at most ``timeout`` s)."""
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        key = self.folder / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
            key.chmod(0o600)
        socket_path = self.folder / "munge.socket"
        self._start("munged", "munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
                    f"--pid-file={self.folder / 'munged.pid'}", f"--seed-file={self.folder / 'munged.seed'}",
                    f"--log-file={self.folder / 'munged.log'}")
        self._wait("munged's socket", socket_path.exists, timeout)
        self.conf.write_text(slurm_conf(self.folder, node_line(), free_ports(2)))
        self._start("slurmctld", "slurmctld", "-D", "-i")
        self._start("slurmd", "slurmd", "-D", "-N", self.node)
        self._wait("sinfo showing the node idle", self.idle, timeout)

    @property
    def node(self) -> str:
        return next(w for w in self.conf.read_text().split() if w.startswith("NodeName=")).removeprefix("NodeName=")

    def idle(self) -> bool:
        done = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=self.env(), capture_output=True,
                              text=True, timeout=10)
        return done.returncode == 0 and done.stdout.split() == ["idle"]

    def processes(self) -> list[int]:
        """PIDs of the processes of this cluster: its daemons and what SLURM started for it (slurmstepd, the jobs'
        scripts and their children). Each carries SLURM_CONF=<this conf> in its environment, and is a SLURM daemon
        or runs in a job (SLURM_JOB_ID): a test's own ``cropkit sweep`` is not one of them."""
        mark = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    environ = (entry / "environ").read_bytes().split(b"\0")
                    name = (entry / "comm").read_text().strip()
                    if mark in environ and (name in SLURM_PROCESSES or any(v.startswith(b"SLURM_JOB_ID=")
                                                                           for v in environ)):
                        pids.append(int(entry.name))
        return pids

    def job_task(self, job: str) -> int | None:
        """PID of the Python process submitit runs for SLURM job ``job`` (``"12"``, or ``"12_3"`` in an array)."""
        array, _, task = job.partition("_")
        wanted = [f"SLURM_ARRAY_JOB_ID={array}", f"SLURM_ARRAY_TASK_ID={task}"] if task else [f"SLURM_JOB_ID={job}"]
        for pid in self.processes():
            with contextlib.suppress(OSError):
                environ = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace").split("\0")
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
                if all(w in environ for w in wanted) and b"submitit.core._submit" in command \
                        and not command[0].endswith(b"srun"):
                    return pid
        return None

    def stop(self, timeout: float = 15) -> None:
        """Cancel every job, stop the daemons, then SIGKILL whatever of this cluster is left (by PID)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", f"--partition={PARTITION}"], env=self.env(), capture_output=True,
                           timeout=10)
        for name in reversed(DAEMONS):
            process = self.daemons.get(name)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(folder: Path, timeout: float = 30):
    """A started `Cluster` in ``folder``, stopped on exit even when the body fails."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder, folder / "slurm.conf")
    try:
        cluster.start(timeout)
        yield cluster
    finally:
        cluster.stop()
