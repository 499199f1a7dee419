"""A few pages of a streamed run at once: their HTTP calls in threads, everything else on the caller's thread.

Customer.io answers a 1,000-person batch in tens or hundreds of milliseconds; one page at a time,
a run would wait for every answer before reading the next page. Here up to `depth` pages are
under way: each page is a program (page_sending.page_program) that yields its HTTP calls one
after another (a page's segment request after its identify); the calls run in a small thread pool,
and the programs' database work (logging, locks, the breaker) stays on the caller's thread, in
order, on its one database connection. Pages finish in any order and are handed back in page
order, so the checkpoint only ever moves past pages whose every request was answered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from connections.services.resync.page_sending import PageResult, Program
from connections.services.resync.pages import Page


@dataclass
class _UnderWay:
    page: Page
    program: Program
    call: Future | None = None
    result: PageResult | None = None


class Pipeline:
    def __init__(self, pool: Executor, depth: int) -> None:
        self.pool, self.depth = pool, max(1, depth)
        self.under_way: deque[_UnderWay] = deque()

    def has_room(self) -> bool:
        return len(self.under_way) < self.depth

    def last_high(self) -> int | None:
        """The last id of the last page under way: where the next page starts, and the mark ends."""
        return self.under_way[-1].page.high if self.under_way else None

    def start(self, page: Page, program: Program) -> None:
        entry = _UnderWay(page, program)
        self.under_way.append(entry)
        self._advance(entry, first=True)

    def wait(self) -> None:
        """Block until at least one call is answered, and carry its page's program on."""
        calls = [entry.call for entry in self.under_way if entry.call is not None]
        if not calls:
            return
        answered, _ = wait(calls, return_when=FIRST_COMPLETED)
        for entry in self.under_way:
            if entry.call in answered:
                self._advance(entry, value=entry.call.result())

    def finished(self) -> Iterator[tuple[Page, PageResult]]:
        """The pages done, in page order (a page done early waits for those before it)."""
        while self.under_way and self.under_way[0].result is not None:
            entry = self.under_way.popleft()
            assert entry.result is not None
            yield entry.page, entry.result

    def _advance(self, entry: _UnderWay, *, first: bool = False, value: Any = None) -> None:
        try:
            call = next(entry.program) if first else entry.program.send(value)
        except StopIteration as done:
            entry.call, entry.result = None, done.value
            return
        entry.call = self.pool.submit(call)
