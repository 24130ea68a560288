"""Headless Chromium (Debian's `chromium` package) for page tests: the DOM after the page's scripts ran, its
console errors, a screenshot. Offline and throwaway: a fresh profile, no network services, no sandbox (CI
containers run as root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=1",  # Chromium 150 logs console messages at verbosity 1 (none at --v=0)
]
# what Chromium logs for a console message or an uncaught exception: `...:INFO:CONSOLE:12] "Uncaught ..."`
CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))?\]\s*(.*)")


def chromium() -> str:
    """The browser's path; a missing browser skips the test locally and fails it in CI (`.ci/run` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium not installed (Debian: apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Loaded:
    """What the browser made of a page: the serialised DOM and the console lines it logged."""

    dom: str
    console: list[str]


def _browse(page: Path, *extra: str, query: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    address = Path(page).resolve().as_uri() + (f"?{query}" if query else "")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, address],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


def dump_dom(page: Path, query: str = "") -> Loaded:
    """Open `page` from disk (with `?query`), let its scripts run, return the DOM and every console line."""
    done = _browse(page, "--dump-dom", query=query)
    return Loaded(done.stdout, [m.group(1) for m in CONSOLE.finditer(done.stderr)])


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1000) -> Path:
    """A PNG of the page's first `width` x `height` pixels."""
    _browse(
        page, f"--screenshot={Path(png).resolve()}", f"--window-size={width},{height}", "--hide-scrollbars"
    )
    return png
