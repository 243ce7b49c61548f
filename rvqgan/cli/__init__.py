"""Command-line interface: `rvqgan SUBCOMMAND ...` (see `rvqgan --help`).

`parser` holds the grammar (what can be typed, with its help), `commands` what each command
does, and `main` here is the one place where exceptions become one-line errors and exit statuses.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

from ..allocator import reuse_freed_memory
from ..backends import BackendError
from ..checkpoint import CheckpointError
from ..fileio import shorten
from ..files import ClippingWarning
from ..train import TrainingError
from ..untrusted import for_terminal
from .commands import UsageError
from .parser import build_parser


class Terminated(BaseException):
    """SIGTERM arrived: unwind (removing temporary files) and exit 143."""


def run() -> int:
    """The `rvqgan` command: `main` in a process whose malloc keeps freed memory for reuse.

    The allocator setting (`rvqgan.allocator`) is process-wide and permanent, so it is made here,
    in the program's own process, not in `main`, which callers may embed.
    """
    reuse_freed_memory()
    return main()


# Exceptions that are the user's to fix: one line, exit 1. ValueError covers AudioError,
# ConfigError, FormatError, InputError and TokenizeError.
USER_ERRORS = (UsageError, BackendError, CheckpointError, TrainingError, ValueError, OSError, RecursionError)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors are one line on stderr and exit 1 (an unexpected internal error exits
    70); warnings are one line each; SIGINT and SIGTERM unwind (removing temporary files) and exit
    130 and 143."""
    args = build_parser().parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    def show_warning(message: Warning | str, category: type[Warning], *rest: object, **kw: object) -> None:
        print(f"rvqgan {args.command}: warning: {for_terminal(message)}", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClippingWarning)
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        line = for_terminal(shorten(str(exc).splitlines()[0], 1000)) if str(exc) else type(exc).__name__
        print(f"rvqgan {args.command}: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rvqgan {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"rvqgan {args.command}: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug: still one line (RVQGAN_DEBUG=1 shows the traceback)
        if os.environ.get("RVQGAN_DEBUG"):
            raise
        print(
            f"rvqgan {args.command}: internal error (please report it): {type(exc).__name__}: {for_terminal(str(exc)[:200])}",
            file=sys.stderr,
        )
        return 70
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["USER_ERRORS", "Terminated", "UsageError", "build_parser", "main", "run"]
