"""Child processes that Ctrl+C reaches, however the tests were started."""
import signal


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` of a child the test interrupts: SIGINT back to its default. A shell starts a background job
    (``./kit test &``, ``nohup``) with SIGINT ignored, every child inherits that, and Python installs no
    KeyboardInterrupt handler for a signal it finds ignored — the child would run on through Ctrl+C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
