"""The cyclic garbage collector around what lives as long as the process: big imports, and the exit.

Importing Dagster, its instance storage (SQLAlchemy, alembic) and Great Expectations leaves about 400,000
objects tracked by the collector. While they are created, the heap grows by a quarter again and again,
and each time CPython runs a full collection over all of it (seven of them in a forced `cycle`, about
1.1 s), although the imports leave next to no garbage; every later full collection walks them again.
At exit, the interpreter clears the modules and collects the whole heap once more (1.5 to 2.4 s after a
forced cycle). `long_lived()` pauses the collector during such imports and then moves everything alive
to the permanent generation (`gc.freeze()`), which no collection looks at; `freeze_for_exit()` does the
same before the process ends. Reference counting still frees every object, frozen or not, the moment it
is no longer used; only objects in reference cycles among the frozen ones stay until the process ends.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """No automatic collection inside the block; afterwards, when the block imported a module, every
    object alive is frozen (module objects, the instance, the GX context: they live as long as the
    process). A block that imported nothing (the imports were done before) freezes nothing, so that a
    process running many cycles never freezes the garbage of the ones before."""
    enabled = gc.isenabled()
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) != modules:
            gc.freeze()
        if enabled:
            gc.enable()


def freeze_for_exit() -> None:
    """Called last, when a command's work is done and its output flushed: the interpreter's collections
    at exit then skip the heap (every file and connection is closed by then; nothing waits on a
    finalizer of an object in a reference cycle)."""
    gc.freeze()
