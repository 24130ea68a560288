"""User errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input or configuration; the message is one self-contained line."""


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command-line entry point so a UserError prints `error: ...` and exits with code 2, and a full
    disk prints one line naming the file and exits with code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except Exception as err:
            full = disk_full(err)
            if full is None:
                raise
            print(f"error: {no_space_line(full)}; free disk space and run it again", file=sys.stderr)
            sys.exit(1)

    return wrapper


def disk_full(err: BaseException | None) -> OSError | None:
    """The `No space left on device` error behind `err` (Lightning and torch re-raise it from deep inside a
    checkpoint write), or None."""
    while err is not None:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        err = err.__cause__ or err.__context__
    return None


def no_space_line(full: OSError) -> str:
    """What a full disk's error says: `no space left on device[ writing <file>]`."""
    return "no space left on device" + (f" writing {full.filename}" if full.filename else "")
