"""The client that runs a lesson's cells: short polls, and a watchdog for a kernel message that never comes.

papermill hands each cell to nbclient, which sends the cell and then awaits the kernel's ``execute_reply`` with
*one* poll as long as the cell's whole time limit. That poll is pyzmq's asyncio poller, which wakes on the socket's
edge-triggered ``zmq.FD``; when that wakeup is missed, the reply sits in the socket, unseen, until the poll times out
(pyzmq then does one real ``zmq_poll(0)`` and finds it). A busy machine showed it: a cell whose kernel replied after
0.33 s "finished" after 1800 s, its time limit. ``python -m benchmarks.kernel_replies`` measures how often replies
come late and whether the late ones were waiting in the socket.

:class:`WatchdogClient` changes two things:

* it never waits on one long poll: shell and iopub are polled in slices of ``slice_s`` (1 s). A slice that runs
  out makes pyzmq do a real, level-triggered poll, so a missed wakeup costs at most one slice. A message found only
  that way is counted (``late``);
* a watchdog follows the kernel's status for the cell's request on iopub. Once the kernel has reported ``idle`` for
  it (or nothing at all arrived for it) and still no ``execute_reply`` came after ``watchdog_s``, a message was lost:
  :class:`LostMessage` is raised, and :func:`cropkit.lessons.notebook.execute` runs the lesson once more (the results
  cache
  makes the replay cheap). After the reply, the watchdog waits for the kernel's ``idle`` the same way.

A cell that is computing (``busy``, not ``idle``) is never stopped by the watchdog; the cell's time limit (the hang
cap) stays the last resort against a real hang. That limit counts from the cell's last output (a printed line, a
progress bar's update), not from its start: on a machine shared with other work a cell's progress bar keeps moving
at a third of its usual pace, and only a cell silent for the whole cap is a hang. The client runs as the papermill
engine :data:`ENGINE`, registered when this module is imported.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from queue import Empty

from jupyter_core.utils import ensure_event_loop
from nbclient.client import timestamp
from nbclient.exceptions import CellExecutionComplete
from nbclient.util import ensure_async
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args
from traitlets import Float

ENGINE = "cropkit"
SLICE_S = 1.0  # the longest single poll: a missed wakeup costs at most this
WATCHDOG_S = 60.0  # kernel idle (or silent) this long without the cell's execute_reply: the reply was lost


class LostMessage(RuntimeError):
    """A cell's ``execute_reply`` (or the kernel's ``idle`` after it) never arrived; the text says which cell, what
    the kernel had reported and for how long. ``late``: messages found only when a slice ran out, before this;
    ``record``: what :func:`run_twice` counted, once it gave up."""

    def __init__(self, text: str, late: list[dict] | None = None, record: dict | None = None):
        super().__init__(text)
        self.late, self.record = late or [], record


def run_twice(run, name: str, warn) -> tuple[object, dict]:
    """``run()`` (one execution of lesson ``name`` through :data:`ENGINE`), and once more if it lost a message.

    Returns its notebook and the record ``{"restarts", "late_messages", "lost"}`` (``lost``: why each restart
    happened); ``warn(text)`` is told about a restart. A second loss raises :class:`LostMessage` with the record.
    """
    record = {"restarts": 0, "late_messages": 0, "lost": []}
    while True:
        try:
            nb = run()
        except LostMessage as lost:
            record["late_messages"] += len(lost.late)
            record["lost"].append(str(lost))
            if record["restarts"]:
                raise LostMessage(f"{lost}; it was lost again after {name} was restarted once", lost.late,
                                  record) from None
            record["restarts"] += 1
            warn(f"{name}: {lost}; restarting the lesson once")
            continue
        record["late_messages"] += len(nb.metadata.get("cropkit", {}).get("late_messages", []))
        return nb, record


@dataclasses.dataclass
class Watch:
    """What the client has seen of one execute request (``time.monotonic()`` seconds; None: not yet)."""
    sent: float
    busy: float | None = None
    idle: float | None = None
    iopub: float | None = None  # the last iopub message for the request
    reply: float | None = None

    def alive(self) -> float:
        """The request's last sign of life: its last iopub message (an output, a progress bar's update), else when
        it was sent. The hang cap counts from here, so a cell that keeps reporting progress on a slow machine is
        slow, not hung."""
        return max(self.sent, self.iopub or self.sent)

    def silence(self, now: float) -> str | None:
        """Why the reply looks lost at ``now`` (given the watchdog's patience elapsed), or None."""
        if self.idle is not None:
            return f"the kernel reported idle {now - self.idle:.1f} s ago"
        if self.iopub is None:
            return f"nothing arrived on iopub for it (no busy, no idle) in {now - self.sent:.1f} s"
        return None


def _source(cell) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return first if len(first) <= 60 else first[:57] + "…"


class WatchdogClient(PapermillNotebookClient):
    """papermill's client with sliced polls and the lost-message watchdog (see the module's docstring)."""

    slice_s = Float(SLICE_S, help="longest single poll of a channel, seconds").tag(config=True)
    watchdog_s = Float(WATCHDOG_S, help="kernel idle or silent this long without the reply: lost").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.watches: dict[str, Watch] = {}
        self.late: list[dict] = []  # {"cell", "channel", "msg_type", "age_s"}: found only when a slice ran out
        self.cell_index = -1  # the running cell's (set by the output poller, which nbclient starts first)

    def _watch(self, msg_id: str) -> Watch:
        if msg_id not in self.watches:
            self.watches = {msg_id: Watch(sent=time.monotonic())}  # only the running request is watched
        return self.watches[msg_id]

    async def _receive(self, channel, name: str, cell_index: int) -> dict:
        """One slice's poll of ``channel``; ``Empty`` when nothing came. A message found only by the slice's final
        level-triggered poll, though sent well before it, was missed by the asyncio wakeup: it is counted."""
        start = time.monotonic()
        msg = await ensure_async(channel.get_msg(timeout=self.slice_s))
        if time.monotonic() - start >= self.slice_s:
            date = msg["header"].get("date")
            age = time.time() - date.timestamp() if hasattr(date, "timestamp") else 0.0
            if age > 0.2 * self.slice_s:
                self.late.append({"cell": cell_index, "channel": name, "msg_type": msg["msg_type"],
                                  "age_s": round(age, 3)})
        return msg

    def _lost(self, cell, what: str) -> LostMessage:
        return LostMessage(f"watchdog: cell {self.cell_index} (`{_source(cell)}`): {what} (watchdog "
                           f"{self.watchdog_s:g} s)", late=self.late)

    async def _async_poll_output_msg(self, parent_msg_id: str, cell, cell_index: int) -> None:
        watch, self.cell_index = self._watch(parent_msg_id), cell_index
        while True:
            try:
                msg = await self._receive(self.kc.iopub_channel, "iopub", cell_index)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") != parent_msg_id:
                continue
            watch.iopub = time.monotonic()
            if msg["msg_type"] == "status":
                state = msg["content"]["execution_state"]
                if state == "busy":
                    watch.busy = watch.iopub
                elif state == "idle":
                    watch.idle = watch.iopub
            try:
                self.process_message(msg, cell, cell_index)
            except CellExecutionComplete:
                return

    async def _async_poll_for_reply(self, msg_id: str, cell, timeout, task_poll_output_msg,
                                    task_poll_kernel_alive) -> dict:
        watch = self._watch(msg_id)
        capped = timeout is not None
        while True:
            try:
                msg = await self._receive(self.kc.shell_channel, "shell", self.cell_index)
            except Empty:
                now = time.monotonic()
                if capped and now > watch.alive() + timeout:  # the hang cap, handled as nbclient handles it
                    await self._async_check_alive()
                    error_reply = await self._async_handle_timeout(timeout, cell)  # raises unless interrupting
                    capped = False
                    if error_reply:
                        task_poll_kernel_alive.cancel()
                        return {**error_reply, "parent_header": {"msg_id": msg_id}}
                    continue
                waited_since = watch.idle if watch.idle is not None else watch.sent
                if now - waited_since > self.watchdog_s:
                    why = watch.silence(now)
                    if why is not None:
                        task_poll_kernel_alive.cancel()
                        task_poll_output_msg.cancel()
                        raise self._lost(cell, f"{why}, but its execute_reply never arrived") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            watch.reply = time.monotonic()
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
            await self._await_idle(watch, cell, task_poll_output_msg, task_poll_kernel_alive)
            return msg

    async def _await_idle(self, watch: Watch, cell, task_poll_output_msg, task_poll_kernel_alive) -> None:
        """After the reply, the kernel's ``idle`` (the cell's last outputs come before it): outputs may keep
        arriving for as long as they come; ``watchdog_s`` of silence means the idle was lost."""
        while not task_poll_output_msg.done():
            await asyncio.wait([task_poll_output_msg], timeout=self.slice_s)
            now = time.monotonic()
            if not task_poll_output_msg.done() and now - max(watch.reply, watch.iopub or 0) > self.watchdog_s:
                task_poll_kernel_alive.cancel()
                task_poll_output_msg.cancel()
                raise self._lost(cell, f"its execute_reply came {now - watch.reply:.1f} s ago, but not the kernel's "
                                       "idle status (nothing on iopub since)")
        task_poll_kernel_alive.cancel()
        task_poll_output_msg.result()  # re-raise what the output poller raised, if anything

    def _cleanup_kernel(self):
        """Before the kernel is shut down, a cell still waiting (Ctrl+C left it) is cancelled and awaited: the kernel
        answers a shutdown by interrupting that cell, and its error would otherwise be printed later, orphaned."""
        loop = ensure_event_loop()
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        super()._cleanup_kernel()

    def execute(self, **kwargs):
        nb = super().execute(**kwargs)
        nb.metadata.setdefault("cropkit", {})["late_messages"] = self.late
        return nb


class WatchdogEngine(NBClientEngine):
    """papermill's nbclient engine with :class:`WatchdogClient` (``client``) in place of its own client."""

    client = WatchdogClient

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output,
                             stdout_file=stdout_file, stderr_file=stderr_file)
        return cls.client(nb_man, **final).execute()


papermill_engines.register(ENGINE, WatchdogEngine)
