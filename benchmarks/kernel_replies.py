"""Do a kernel's replies reach papermill late on a busy machine, and were they waiting in the socket?

    nice -n 10 python -m benchmarks.kernel_replies                     # 200 cells per client, 6 s cell timeout
    nice -n 10 python -m benchmarks.kernel_replies --load 2            # the same with two busy loops beside it
    nice -n 10 python -m benchmarks.kernel_replies --cells 60 --load 0 --lose-wakeups 10 --timeout 6

A stress notebook of short cells (each prints, shows an ipywidgets slider beside an Output widget, runs a widget
progress bar and draws a small plot into the Output widget, as the lessons do) is executed by papermill while
``--load`` processes of ``while True: pass`` keep the cores busy, once per client:

* ``stock``: papermill's own client (nbclient), which awaits each cell's ``execute_reply`` with one poll as long as
  the cell's timeout (``--timeout``, short here so that a stall shows in seconds);
* ``fixed``: :class:`cropkit.lessons.watchdog.WatchdogClient`, which polls in 1 s slices and has the lost-reply
watchdog.

Both are observed the same way, without changing how they wait: every message's receipt is timed against the date
the kernel stamped on it (``delay``), a reply or ``idle`` still missing ``--stall`` s after its counterpart arrived
is a stall, and a reply that came only when its poll ran out of time, though dated long before, was found by pyzmq's
own closing ``zmq_poll(0)``: it sat in the socket while the client waited (``found_at_timeout``). The fixed client
also counts what its slices found (``found_by_slice_end``).

``--lose-wakeups N`` injects the fault on every N-th cell: the shell socket's wakeup is switched off until the reply
has been read, as if pyzmq had missed its edge. ``--probe`` looks into a stalled socket with a ``zmq_poll(0)`` of its
own; measured here, such a look from outside pyzmq's bookkeeping makes later wakeups go missing, so it is off by
default. Per-cell rows go to ``outputs/benchmarks/kernel_replies.csv``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

FIRST = """import matplotlib.pyplot as plt
import ipywidgets as widgets
from IPython.display import display
from tqdm.auto import tqdm"""

CELL = """print("cell {i}")
slider, out = widgets.FloatSlider(value={i} / 1000, description="tau"), widgets.Output()
display(widgets.VBox([slider, out]))
for _ in tqdm(range(20), mininterval=0, leave=False):
    pass
with out:  # a plot inside an Output widget, as the lessons' explorers draw theirs
    fig, ax = plt.subplots(figsize=(2, 1.2))
    ax.plot([0, 1], [0, {i}])
    plt.show()"""


def stress_notebook(cells: int) -> nbformat.NotebookNode:
    source = [FIRST] + [CELL.format(i=i) for i in range(1, cells)]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in source],
                                    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})


def _recorder(base):
    """``base`` (a papermill client class) that times every message it receives and checks a stalled socket."""
    import zmq

    class Recorder(base):
        stall_s = 2.0
        probe = False  # look into a stalled socket with zmq_poll(0) (it disturbs pyzmq: see the module's docstring)
        lose_every = 0  # every n-th cell loses its reply's wakeup (injected); 0: none

        made: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.rows: list[dict] = []
            self.current: dict | None = None
            self.made.append(self)

        def start_new_kernel_client(self):  # papermill calls the sync one (bound to nbclient's coroutine)
            from jupyter_core.utils import ensure_event_loop

            kc = super().start_new_kernel_client()
            execute = kc.execute

            def recording_execute(*args, **kwargs):
                msg_id = execute(*args, **kwargs)
                self.current = {"cell": len(self.rows), "msg_id": msg_id, "sent": time.time(), "reply_date": None,
                                "reply_seen": None, "idle_date": None, "idle_seen": None, "stalled": None,
                                "in_socket": None, "wakeup_lost": False,
                                "found_at_timeout": False}
                self.rows.append(self.current)
                if self.lose_every and len(self.rows) % self.lose_every == 0:
                    # the injected fault: no wakeup for the shell socket until its reply has been read
                    ensure_event_loop().remove_reader(kc.shell_channel.socket._fd)
                    self.current["wakeup_lost"] = True
                return msg_id

            kc.execute = recording_execute
            for name in ("shell", "iopub"):
                channel = getattr(kc, f"{name}_channel")
                channel.get_msg = self._timed(channel.get_msg, name)
            ensure_event_loop().create_task(self._observe())  # runs whenever the client's loop runs
            return kc

        def _timed(self, get_msg, channel: str):
            async def get(timeout=None):
                start = time.monotonic()
                msg = await get_msg(timeout=timeout)
                waited = time.monotonic() - start
                row, now = self.current, time.time()
                if row is not None and msg["parent_header"].get("msg_id") == row["msg_id"]:
                    date = msg["header"]["date"].timestamp()
                    if channel == "shell" and msg["msg_type"] == "execute_reply":
                        row["reply_date"], row["reply_seen"] = date, now
                        # the poll ran its whole timeout, then pyzmq's own zmq_poll(0) found a reply sent long before
                        row["found_at_timeout"] = timeout is not None and waited >= 0.98 * timeout \
                            and now - date > 0.5 * timeout
                        if row["wakeup_lost"]:
                            self.kc.shell_channel.socket._init_io_state()  # the wakeup back, as pyzmq installs it
                    elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        row["idle_date"], row["idle_seen"] = date, now
                return msg
            return get

        async def _observe(self):
            """Every 0.1 s: a message still missing ``stall_s`` after its counterpart arrived is looked for in the
            socket once, with a zmq_poll(0) on a shadow socket (pyzmq's own wakeup bookkeeping is left alone)."""
            while self.kc is not None:
                await asyncio.sleep(0.1)
                row, now = self.current, time.time()
                if row is None or row["stalled"]:
                    continue
                if row["reply_seen"] is None and row["idle_seen"] and now - row["idle_seen"] > self.stall_s:
                    row["stalled"], socket = "shell", self.kc.shell_channel.socket
                elif row["idle_seen"] is None and row["reply_seen"] and now - row["reply_seen"] > self.stall_s:
                    row["stalled"], socket = "iopub", self.kc.iopub_channel.socket
                else:
                    continue
                if not self.probe:
                    continue
                poller = zmq.Poller()
                poller.register(zmq.Socket.shadow(socket.underlying), zmq.POLLIN)
                row["in_socket"] = bool(poller.poll(0))

    return Recorder


def run(client: str, cells: int, timeout: float, stall_s: float, folder: Path, lose_every: int = 0,
        probe: bool = False) -> dict:
    """Execute the stress notebook with ``client`` ("stock" or "fixed") and return its rows and how it ended."""
    import papermill
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import papermill_engines

    from cropkit.lessons import watchdog

    recorder = _recorder(watchdog.WatchdogClient if client == "fixed" else PapermillNotebookClient)
    recorder.stall_s, recorder.lose_every, recorder.probe = stall_s, lose_every, probe

    class Engine(watchdog.WatchdogEngine):  # papermill's engine; only the client class differs
        pass

    Engine.client = recorder
    papermill_engines.register(f"kernel-replies-{client}", Engine)
    path = folder / "stress.ipynb"
    nbformat.write(stress_notebook(cells), str(path))
    start, ended = time.perf_counter(), "completed"
    try:
        papermill.execute_notebook(str(path), str(folder / f"stress_{client}.ipynb"), kernel_name="python3",
                                   engine_name=f"kernel-replies-{client}", progress_bar=False,
                                   execution_timeout=timeout, cwd=str(folder),
                                   **({"watchdog_s": max(3 * stall_s, 10.0)} if client == "fixed" else {}))
    except Exception as error:  # a stall the client turned into an error ends the run: that is a result too
        ended = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    made = recorder.made[-1]
    return {"client": client, "rows": made.rows, "seconds": time.perf_counter() - start, "ended": ended,
            "late": getattr(made, "late", None)}


def summarise(result: dict, timeout: float) -> dict:
    rows = [r for r in result["rows"] if r["reply_seen"] is not None]
    delays = sorted(r["reply_seen"] - r["reply_date"] for r in rows)
    stalled = [r for r in result["rows"] if r["stalled"]]

    def pct(q):
        return delays[min(len(delays) - 1, int(q * len(delays)))] if delays else float("nan")

    return {"client": result["client"], "cells": len(result["rows"]), "seconds": round(result["seconds"]),
            "delay_median_s": round(statistics.median(delays), 3) if delays else None,
            "delay_p99_s": round(pct(0.99), 3), "delay_max_s": round(delays[-1], 3) if delays else None,
            "replies_over_1s": sum(d > 1 for d in delays),
            "replies_at_timeout": sum(d >= 0.9 * timeout for d in delays),
            "stalls_shell": sum(r["stalled"] == "shell" for r in stalled),
            "stalls_iopub": sum(r["stalled"] == "iopub" for r in stalled),
            "found_at_timeout": sum(r["found_at_timeout"] for r in result["rows"]),
            "probed_in_socket": sum(bool(r["in_socket"]) for r in stalled),
            "wakeups_lost_injected": sum(r["wakeup_lost"] for r in result["rows"]),
            "found_by_slice_end": None if result["late"] is None else len(result["late"]),
            "ended": result["ended"]}


def burners(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` busy loops, each ended by ``timeout`` after ``seconds`` at the latest."""
    return [subprocess.Popen(["timeout", str(int(seconds)), sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_replies", description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="cells in the stress notebook (default 200)")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes during each run (default 0)")
    parser.add_argument("--timeout", type=float, default=6, help="per-cell timeout, seconds (default 6)")
    parser.add_argument("--stall", type=float, default=2, help="a message missing this long after its counterpart "
                                                               "is a stall, and is looked for (default 2 s)")
    parser.add_argument("--lose-wakeups", type=int, default=0, metavar="N",
                        help="inject the fault: every N-th cell's shell socket gets no wakeup until its reply is read "
                             "(default 0: none; the natural experiment)")
    parser.add_argument("--probe", action="store_true",
                        help="look into a stalled socket with a zmq_poll(0) (it disturbs later wakeups)")
    parser.add_argument("--clients", nargs="+", default=["stock", "fixed"], choices=["stock", "fixed"])
    parser.add_argument("--max-seconds", type=float, default=600, help="the busy loops end by then at the latest")
    args = parser.parse_args(argv)
    import pandas as pd

    from benchmarks import common

    print(f"=== kernel replies under load: {args.cells} cells, {args.load} busy loops, cell timeout "
          f"{args.timeout:g} s\n    {common.where()} · nice {os.nice(0)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for client in args.clients:
            load = burners(args.load, args.max_seconds)
            try:
                results.append(run(client, args.cells, args.timeout, args.stall, Path(tmp), args.lose_wakeups,
                                   args.probe))
            finally:
                for p in load:  # SIGTERM: `timeout` passes it on to its busy loop (SIGKILL would orphan it)
                    p.terminate()
                    p.wait()
    table = pd.DataFrame([summarise(r, args.timeout) for r in results])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    rows = pd.DataFrame([{"client": r["client"], **{k: v for k, v in row.items() if k != "msg_id"}}
                         for r in results for row in r["rows"]])
    path = common.out_dir() / "kernel_replies.csv"
    rows.to_csv(path, index=False)
    print(f"per-cell rows → {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
