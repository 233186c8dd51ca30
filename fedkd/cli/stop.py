"""How a simulation script ends after Ctrl-C or SIGTERM: at once, with the shell's exit code."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

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


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code. After Ctrl-C or SIGTERM the process ends at once:
    Flower's engine threads may wait without end on Ray processes the signal stopped,
    and Python would wait for them at exit. Every results file is replaced atomically,
    and Ray's processes end with this one."""
    prog = Path(sys.argv[0]).name
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
        os._exit(code)
    sys.exit(code)
