"""The device worker of the streaming Lmk2Video engine: one thread per device serving every stream.

Streams submit complete windows (never partial ones, so a stream that is slow to deliver poses holds nothing
up); the worker takes the oldest queued window plus every other queued window of the same layout (up to
`max_batch`) and runs them as one batch. Other device work (an avatar's reference state) goes through the same
thread with `call`, so one thread owns the accelerator and the event loop never waits on it.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from facecast.models.aniportrait.streaming.sampler import CausalWindowSampler, WindowJob


class WorkerClosed(RuntimeError):
    """The engine was closed while work was queued."""


class _Call:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class WindowWorker:
    """Runs WindowJobs (batched by layout) and plain calls on its own daemon thread, oldest first."""

    def __init__(
        self,
        sampler: CausalWindowSampler,
        *,
        max_batch: int = 8,
        batch_wait_s: float = 0.002,
        name: str = "lmk2video-worker",
    ) -> None:
        """batch_wait_s: how long a lone window waits for others of its layout before running (a stream that
        just got its frames back usually submits its next window within a millisecond or two)."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.sampler = sampler
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.batch_sizes: list[int] = []  # size of every UNet batch run, for benchmarks
        self._queue: deque[WindowJob | _Call] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: WindowJob) -> concurrent.futures.Future[Any]:
        """Queue a window; its future gives (latents (4, N, h, w), frames (N, H, W, 3) uint8). Cancel to drop it."""
        self._put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn() on the worker thread and wait for its result (re-raises its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        item = _Call(fn)
        self._put(item)
        return item.future.result()

    def _put(self, item: WindowJob | _Call) -> None:
        with self._cv:
            if self._closed:
                raise WorkerClosed("the streaming engine is closed")
            self._queue.append(item)
            self._cv.notify()

    def _take(self) -> WindowJob | _Call | list[WindowJob] | None:
        """Under the lock: the next call, or the oldest live job plus queued jobs of its layout."""
        while True:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            head = self._queue.popleft()
            if isinstance(head, _Call):
                return head
            if head.future.set_running_or_notify_cancel():
                break
        batch = [head]
        self._gather(batch)
        if len(batch) == 1 and self.batch_wait_s > 0 and self.max_batch > 1:
            self._cv.wait(self.batch_wait_s)
            self._gather(batch)
        return batch

    def _gather(self, batch: list[WindowJob]) -> None:
        """Under the lock: move queued live jobs of the batch's layout into it, up to max_batch."""
        for item in list(self._queue):
            if len(batch) >= self.max_batch:
                return
            if isinstance(item, WindowJob) and item.shape_key == batch[0].shape_key:
                self._queue.remove(item)
                if item.future.set_running_or_notify_cancel():
                    batch.append(item)

    def _run(self) -> None:
        while True:
            with self._cv:
                work = self._take()
            if work is None:
                return
            if isinstance(work, _Call):
                try:
                    work.future.set_result(work.fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    work.future.set_exception(exc)
                continue
            assert isinstance(work, list)
            self.batch_sizes.append(len(work))
            try:
                results = self.sampler.run(work)
            except BaseException as exc:  # noqa: BLE001 - every waiting stream gets the error
                for job in work:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(work, results, strict=True):
                job.future.set_result(result)

    def close(self) -> None:
        """Stop the thread after the batch in progress; queued work fails with WorkerClosed."""
        with self._cv:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for item in pending:
            future = item.future
            if not future.cancelled() and not future.done():
                future.set_exception(WorkerClosed("the streaming engine was closed"))
        if threading.current_thread() is not self._thread:
            self._thread.join()
