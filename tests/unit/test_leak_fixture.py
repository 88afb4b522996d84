"""The suite's leak check itself: a test that leaves a task pending or a thread running fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAKY = '''
import asyncio, threading, time

def test_leaves_a_task_pending():
    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(60), name="forgotten-poller")
    asyncio.run(main())

def test_leaves_a_thread_running():
    threading.Thread(target=time.sleep, args=(10,), name="forgotten-thread", daemon=True).start()

def test_cleans_up():
    async def main():
        task = asyncio.create_task(asyncio.sleep(0.01))
        await task
    asyncio.run(main())
    worker = threading.Thread(target=time.sleep, args=(0.1,))
    worker.start()
    worker.join()
'''


def test_leaked_tasks_and_threads_fail_the_test_that_leaked_them(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    out = result.stdout
    assert result.returncode == 1, out
    assert "3 passed, 2 errors" in out, out
    assert "task left pending: forgotten-poller" in out and "thread left running: forgotten-thread" in out
    assert "ERROR test_leaky.py::test_cleans_up" not in out
