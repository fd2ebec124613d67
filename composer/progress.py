"""One progress-bar helper for the whole project (tqdm; sparse when stderr is not a TTY).

Contract: `progress(iterable, desc=..., total=...)` returns a tqdm bar that supports
`set_postfix`; after `set_quiet(True)` (entry points call it with `Settings.quiet`, i.e.
COMPOSER_QUIET=1) bars are disabled but the iterable is unchanged.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def progress(iterable=None, desc: str = "", total: int | None = None, **kw):
    kw.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 15.0)  # logs get a line per 15 s
    return tqdm(iterable, desc=desc, total=total, disable=_quiet, dynamic_ncols=True, leave=False, **kw)
