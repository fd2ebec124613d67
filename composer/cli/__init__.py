"""The `composer` command line (also `python -m composer`): a typed Typer app.

Contract: `main(argv=None) -> int` parses `argv` (default: `sys.argv[1:]`), runs the command
and returns its exit code; it never calls `sys.exit` (`composer/__main__.py` and the
`composer` script do). Exit codes:
- 0: done (also `--help`).
- 1: a user-facing error — `RegistryError`, `RouterError`, `ComposerError`,
  `BenchmarkError` or `CommandError` — printed as exactly one line on stderr,
  `composer: error: <message>`; the command changed nothing.
- 2: a usage error (unknown command or option, bad choice, missing argument), printed with
  the usage by Typer.
- 130: interrupted (Ctrl-C).
Anything else is a bug and propagates with its traceback.

The global `--home DIR` goes before the command (`composer --home DIR experts list`). The
commands live one group per module: `serve` (build-demo, demo, serve), `registry_cmds`
(register, experts), `routing` (route, generate, routers, fit), `evaluate` (eval);
`render` prints, `common` holds the shared settings and parsing. Each command reads its
settings once (`common.load_settings`). Importing this package loads neither torch,
transformers, the routers nor Ray: `composer --help` is instant.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

from composer.cli import evaluate, registry_cmds, routing, serve
from composer.cli.common import CommandError, Globals
from composer.errors import ComposerError

__all__ = ["CommandError", "app", "main"]

# user-facing error classes by module: one whose module was never imported cannot have been raised,
# so the check needs no import (routers and the evaluation load torch)
_USER_ERRORS = (
    ("registry.errors", "RegistryError"),
    ("routers.base", "RouterError"),
    ("composer.eval.benchmark", "BenchmarkError"),
)


def is_user_error(e: BaseException) -> bool:
    """Whether `e` is a failure to report in one line (not a bug)."""
    if isinstance(e, (CommandError, ComposerError)):
        return True
    return any(
        isinstance(e, getattr(sys.modules[mod], name)) for mod, name in _USER_ERRORS if mod in sys.modules
    )


class _Commands(TyperGroup):
    """The command group: turns user errors and Ctrl-C in a command into their exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            print("composer: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as e:
            if not is_user_error(e):
                raise
            message = " ".join(line.strip() for line in str(e).splitlines())
            print(f"composer: error: {message}", file=sys.stderr)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="composer",
    cls=_Commands,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Composer: compose specialised experts.",
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        str | None, typer.Option("--home", help="registry home", show_default="$COMPOSER_HOME or ~/.composer")
    ] = None,
) -> None:
    """Composer: compose specialised experts."""
    if not isinstance(ctx.obj, Globals):
        ctx.obj = Globals()
    ctx.obj.home = home


app.command("build-demo")(serve.build_demo_cmd)
app.command("demo")(serve.demo)
app.command("serve")(serve.serve_cmd)
app.command("register")(registry_cmds.register)
app.command("experts")(registry_cmds.experts)
app.command("route")(routing.route)
app.command("generate")(routing.generate)
app.command("routers")(routing.routers)
app.command("eval")(evaluate.evaluate)
app.command("fit")(routing.fit)


def _quiet_libraries() -> None:
    """Library deprecation chatter and per-file load bars are noise on a terminal."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers reads it when imported
    if "transformers" in sys.modules:  # imported already (a library caller): switch its bars off now
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _show_usage_error(e: typer.TyperException) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(e)
    except ImportError:  # no rich: the plain format
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            print(f"composer: error: {e.format_message()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: `sys.argv[1:]`) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="composer", standalone_mode=False, obj=Globals(argv=args))
    except typer.TyperException as e:  # usage errors (Click's exceptions derive from it)
        _show_usage_error(e)
        return e.exit_code
    except typer.Abort:
        print("composer: aborted", file=sys.stderr)
        return 1
    except SystemExit as e:  # Typer exits on a broken pipe (`composer experts list | head`), even embedded
        return e.code if isinstance(e.code, int) else 1
    return code if isinstance(code, int) else 0
