"""One progress-bar helper for the whole project (tqdm; quiet when COMPOSER_QUIET=1, sparse when not a TTY).

Contract: `progress(iterable, desc=..., total=...)` returns a tqdm bar that supports
`set_postfix`; with COMPOSER_QUIET=1 the bar is disabled but the iterable is unchanged.
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(iterable=None, desc: str = "", total: int | None = None, **kw):
    disable = os.environ.get("COMPOSER_QUIET") == "1"
    kw.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 15.0)  # logs get a line per 15 s
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, leave=False, **kw)
