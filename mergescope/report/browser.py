"""Headless Chromium for reports: the README's screenshot (`make screenshot`) and the browser test.

Chromium runs with networking features off and a throwaway profile. `--enable-logging=stderr` makes it log
every console message (console.log/error, uncaught exceptions, CSP violations) as a `CONSOLE` line; the
report logs nothing, so any such line is a fault.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mergescope.errors import PrerequisiteError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE_LINE = re.compile(r":CONSOLE(?::|\()\d+\)?\]\s*(.*)$")
TIMEOUT_S = 120


@dataclass(frozen=True)
class PageLoad:
    """What Chromium made of a page: the DOM after its scripts ran, and every console message."""

    dom: str
    console: tuple[str, ...]


def chromium() -> str:
    """The path of a Chromium binary, or a PrerequisiteError with the install command."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise PrerequisiteError(
        "headless Chromium is not installed", hint="apt-get install -y chromium (Debian/Ubuntu), or run `make browser`"
    )


def console_messages(stderr: str) -> tuple[str, ...]:
    """The console messages in Chromium's stderr log."""
    return tuple(match.group(1) for line in stderr.splitlines() if (match := CONSOLE_LINE.search(line)))


def _run(page: Path, *arguments: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="mergescope-chromium-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *arguments, Path(page).resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )


def load_page(page: Path) -> PageLoad:
    """Open `page` headless and return its DOM after the scripts ran, with the console messages."""
    result = _run(page, "--dump-dom")
    return PageLoad(result.stdout, console_messages(result.stderr))


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600, colors: int | None = 256) -> PageLoad:
    """Save a PNG of the top `height` pixels of `page` (palette-reduced to `colors` to keep it small)."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    result = _run(page, f"--screenshot={png}", f"--window-size={width},{height}", "--force-device-scale-factor=1")
    if not png.is_file():
        raise PrerequisiteError(f"Chromium wrote no screenshot of {page}", hint=result.stderr.strip()[-300:])
    if colors:
        from PIL import Image

        with Image.open(png) as image:
            reduced = image.convert("RGB").quantize(colors=colors)
        reduced.save(png, optimize=True)
    return PageLoad("", console_messages(result.stderr))


if __name__ == "__main__":  # `make screenshot`: python -m mergescope.report.browser REPORT.html OUT.png
    shot = screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(
        f"{sys.argv[2]}: {Path(sys.argv[2]).stat().st_size // 1024} KiB"
        + (f"; console: {shot.console}" if shot.console else "")
    )
