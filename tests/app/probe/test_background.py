import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvloop

from app.probe.background import LoopThread


def test_callers_in_many_threads_share_one_loop_thread():
    loop_thread = LoopThread("test-loop")
    seen: set[str] = set()

    async def work(n: int) -> int:
        await asyncio.sleep(0.05)  # all of them at once, or this test takes 1 s
        seen.add(threading.current_thread().name)
        return n * 2

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda n: loop_thread.run(work(n)), range(20)))
    assert results == [n * 2 for n in range(20)]
    assert seen == {"test-loop"}


def test_a_coroutine_that_raises_raises_in_the_caller():
    async def fail() -> None:
        raise ValueError("from the loop")

    with pytest.raises(ValueError, match="from the loop"):
        LoopThread("test-loop").run(fail())


def test_probes_run_on_uvloop_by_default():
    # uvloop's compiled TLS layer is what keeps a probe's CPU at the raw logins' (probeloop).
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert isinstance(LoopThread("test-loop").run(running_loop()), uvloop.Loop)
    plain = LoopThread("test-loop", asyncio.new_event_loop).run(running_loop())
    assert not isinstance(plain, uvloop.Loop)
