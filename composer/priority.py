"""Background work yields the cores to serving.

Contract: `lower_priority()` sets the calling thread to the lowest CPU priority (Linux:
per-thread nice 19), for threads that run post-hoc fitting or evaluations beside serving;
a no-op where the platform does not support it.
"""

from __future__ import annotations

import os
import threading


def lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
