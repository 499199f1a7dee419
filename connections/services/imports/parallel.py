"""Applying an import's spooled parts in parallel: one thread and one database connection per part.

On PostgreSQL most of a batch's time is the server's (index maintenance, the deferred
foreign-key checks at commit, about a third): with one connection per part, two batches
are worked on at once. `imports.PartitionedSpool` keeps each person's rows in one part, in
the file's order, so the parts never touch the same profile and the last line still wins.

The calling thread hears of every applied batch (for the progress bar and the import's
record); the first error stops the other parts after their current batch and is raised.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

from connections.services.imports.reading import Row, RowSpool
from connections.services.ingest.memberships import ApplyResult

# (lines, bytes of the spool) of one applied batch and what it did
OnBatch = Callable[[int, int, ApplyResult], object]


def apply_parts(parts: Sequence[RowSpool], apply: Callable[[list[Row]], ApplyResult], on_batch: OnBatch) -> None:
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def work(part: RowSpool) -> None:
        try:
            read = [0]
            for batch in part.batches(lambda n: read.__setitem__(0, read[0] + n)):
                if stop.is_set():
                    return
                result = apply(batch)
                events.put(("batch", (len(batch), read[0], result)))
                read[0] = 0
        except BaseException as exc:  # handed to the calling thread, which raises it
            stop.set()
            events.put(("error", exc))
        finally:
            connections.close_all()  # this thread's own connections
            events.put(("done", None))

    threads = [threading.Thread(target=work, args=(part,), name=f"import-part-{n}") for n, part in enumerate(parts)]
    for thread in threads:
        thread.start()
    error: BaseException | None = None
    running = len(threads)
    try:
        while running:
            kind, value = events.get()
            if kind == "done":
                running -= 1
            elif kind == "error":
                error = error or value
            elif error is None:
                on_batch(*value)
    except BaseException:  # Ctrl-C in the calling thread: let the parts finish their batch and stop
        stop.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if error is not None:
        raise error
