"""How a simulation script ends after Ctrl-C or SIGTERM: at once, with the shell's exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import psutil

from fedkd.runtime.process_end import ENDS_AT_ONCE

INTERRUPTED, TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # exit codes, as a shell gives them
SAID = {INTERRUPTED: "interrupted", TERMINATED: "terminated (SIGTERM)"}


def stop_code(err: BaseException) -> int | None:
    """The exit code of a stop by signal: Ctrl-C's KeyboardInterrupt, or the
    ``SystemExit(15)`` Ray's driver makes of SIGTERM; None for anything else."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, SystemExit) and err.code == signal.SIGTERM:
        return TERMINATED
    return None


def stop_descendants() -> None:
    """Ask every process this one started, Ray's among them, to stop (by process id):
    Flower's engine left Ray running (``fedkd.runtime.process_end``), and Ray's agents
    would outlive this process by up to a minute."""
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            process.terminate()


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code. After Ctrl-C or SIGTERM the process stops what it
    started and ends at once: Flower's engine threads may wait without end on Ray
    processes the signal stopped, and Python would wait for them at exit. Every results
    file is replaced atomically."""
    prog = Path(sys.argv[0]).name
    ENDS_AT_ONCE.set()
    try:
        code = main()
    except (KeyboardInterrupt, SystemExit) as err:
        code = stop_code(err)
        if code is None:
            raise
        print(f"{prog}: {SAID[code]}", file=sys.stderr)
    if code in SAID:
        sys.stdout.flush()
        sys.stderr.flush()
        stop_descendants()
        os._exit(code)
    sys.exit(code)
