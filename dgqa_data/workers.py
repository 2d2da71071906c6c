"""Worker processes that never outlive their parent (a killed ``dgqa`` leaves no orphans behind)."""

from __future__ import annotations

import os
import pickle
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


def pool_initializer(parent: int, setup: bytes = b"") -> None:
    """Process-pool initializer: :func:`exit_with_parent`, then ``setup``, a ``(function, args)`` pair
    pickled by the parent, is run. Passing the set-up pickled keeps the worker's start light: the
    modules it needs are imported only once the Ctrl-C handler is in place, so an interrupt while a
    worker starts is as quiet as one while it works."""
    exit_with_parent(parent)
    if setup:
        function, args = pickle.loads(setup)  # written by our own parent process a moment ago
        function(*args)


def quiet_broken_pool_race() -> None:
    """Silence one CPython 3.11 race: after Ctrl-C the pool's results iterator cancels the pending
    futures, the workers exit, and the pool's manager thread then fails to mark those cancelled
    futures broken (``InvalidStateError: CANCELLED``), printing a thread traceback although nothing
    went wrong. Every other thread exception is reported as usual."""
    from concurrent.futures import InvalidStateError

    previous = threading.excepthook
    if getattr(previous, "dgqa_quiet_pool", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is InvalidStateError and "CANCELLED" in str(args.exc_value):
            return
        previous(args)

    hook.dgqa_quiet_pool = True  # type: ignore[attr-defined]
    threading.excepthook = hook
