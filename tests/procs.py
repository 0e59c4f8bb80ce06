"""Helpers for tests that kill a real server process while clients write to it."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any


def kill9_while_writing(proc: subprocess.Popen, writer: Callable[[threading.Event], Any],
                        after_s: float = 1.5) -> None:
    """Run ``writer(stop)`` on a thread, SIGKILL ``proc`` after ``after_s`` seconds, then set
    ``stop`` and wait for the writer."""
    stop = threading.Event()
    t = threading.Thread(target=writer, args=(stop,))
    t.start()
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stop.set()
    t.join(10)
