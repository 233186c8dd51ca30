"""How a simulation script ends after Ctrl-C or SIGTERM: at once, with the shell's exit code."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

INTERRUPTED, TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # exit codes, as a shell gives them


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code. After Ctrl-C or SIGTERM (which Ray's driver turns into
    ``SystemExit(15)``) the process ends at once: Flower's engine threads may wait without
    end on Ray processes the signal stopped, and Python would wait for them at exit. Every
    results file is replaced atomically, and Ray's processes end with this one."""
    prog = Path(sys.argv[0]).name
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = INTERRUPTED
    except SystemExit as err:
        if err.code != signal.SIGTERM:
            raise
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        code = TERMINATED
    if code in (INTERRUPTED, TERMINATED):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
