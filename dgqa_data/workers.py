"""Worker processes that never outlive their parent (a killed ``dgqa`` leaves no orphans behind)."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Process-pool initializer: a daemon thread ends this worker within ``poll_s`` seconds of the
    death of ``parent`` (the pid of the process that made the pool, passed in ``initargs``: a worker
    still starting when its parent was SIGKILLed is already re-parented when this runs). Ctrl-C ends
    the worker at once and quietly; the parent, which gets it too, reports the interruption."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
