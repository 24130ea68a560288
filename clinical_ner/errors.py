"""User errors: one clear line on stderr and a non-zero exit, never a traceback; and the other conventions
every entry point shares (its parser, its warnings)."""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input or configuration; the message is one self-contained line."""


class RankFailed(RuntimeError):
    """Another rank of this multi-process job died or was stopped: the job fails, a sweep goes on."""


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command-line entry point so a UserError prints `error: ...` and exits with code 2, and a full
    disk prints one line naming the file and exits with code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:
            known = known_failure(err)
            if known is None:
                raise
            line, code = known
            hint = "; free disk space and run it again" if code != EXIT_USER_ERROR else ""
            print(f"error: {line}{hint}", file=sys.stderr)
            sys.exit(code)

    return wrapper


def module_parser(module: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of an entry point, its usage line naming the `python -m <module>` form."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description)


def warnings_to_stderr() -> None:
    """Log warnings as one `warning: ...` line each on stderr, keeping stdout for the command's own output."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


def known_failure(err: BaseException) -> tuple[str, int] | None:
    """(the one line, the exit code) of a user mistake (2) or a full disk (1); None for anything else, a bug
    whose traceback is worth showing."""
    if isinstance(err, UserError):
        return str(err), EXIT_USER_ERROR
    full = disk_full(err)
    return (no_space_line(full), 1) if full is not None else None


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
