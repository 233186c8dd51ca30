"""Whether this process ends at once after Ctrl-C or SIGTERM.

A simulation script ends with ``os._exit`` after a signal (``fedkd.cli.stop.exit_with``),
and says so here before it starts. Flower's engine, on its way out of a stopped run,
kills the client actors and shuts Ray down while its own worker threads still wait in
``ray.get``: Ray then logs each of their messages as an ``ActorDiedError`` traceback,
or ends the whole process from one of those threads with exit code 1 ("The core
worker has already been shutdown"). In a process that ends at once anyway the engine
leaves Ray running (``fedkd.runtime.flower_patches``), and Ray's processes end with it.
"""

from __future__ import annotations

import threading

ENDS_AT_ONCE = threading.Event()
