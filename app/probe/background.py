"""An event loop in a daemon thread, for synchronous callers to run coroutines on.

The loop is uvloop's: its TLS layer is compiled, where asyncio's own SSL protocol is pure
Python and cost about a quarter more CPU per login than the blocking ssl module (see the
README's benchmarks).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class LoopThread:
    """Started on first use, so a process that forks before probing starts it after the fork."""

    def __init__(self, name: str,
                 new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
                 ) -> None:
        self._name = name
        self._new_loop = new_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run the coroutine on the loop and wait for its result in the calling thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop()).result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = self._new_loop()
                threading.Thread(target=loop.run_forever, name=self._name, daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop
