"""Adaptive micro-batching of binary tensor requests for entry scripts that define ``run_batch(array)``.

Requests wait in a queue; whenever a batch slot is free the queued rows (up to ``max_batch`` rows of one dtype
and row shape) go to ``run_batch`` as one stacked array, and each request gets its own rows of the output back.
Under light load a request runs at once (a batch of one); under heavy load batches grow by themselves while the
previous one runs. ``max_wait`` (seconds) lets an idle batcher wait that long for a batch to fill.
"""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgepack.runtime import tensors
from edgepack.runtime.response import Response, error_response, internal_error



@dataclass
class _Pending:
    array: np.ndarray
    as_json: bool
    future: asyncio.Future
    key: tuple = field(init=False)
    arrived: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.key = (self.array.dtype.str, self.array.shape[1:])


class Batcher:
    """Collects tensor requests into batches for ``batch_fn()`` (which returns the entry script's run_batch)."""

    def __init__(self, batch_fn: Callable[[], Callable[[np.ndarray], Any] | None], pool: Executor, *,
                 max_batch: int = 32, max_wait: float = 0.0, slots: int = 1) -> None:
        self.batch_fn, self.pool = batch_fn, pool
        self.max_batch, self.max_wait, self.slots = max(1, max_batch), max(0.0, max_wait), max(1, slots)
        self.queue: list[_Pending] = []
        self.running = 0
        self._timer: asyncio.TimerHandle | None = None

    def accepts(self, content_type: str | None, body: bytes) -> bool:
        """True when this request is a tensor and the entry script can take batches."""
        return self.batch_fn() is not None and tensors.is_tensor_request(content_type, body)

    def submit(self, body: bytes, accept: str | None) -> Response | asyncio.Future:
        """Queue one request; returns a refusal at once, or a future of its share of a batch's output."""
        try:
            array = tensors.decode(body)
        except ValueError as exc:
            return error_response(400, f"request body: {exc}")
        if array.shape[0] > self.max_batch:
            return error_response(413, f"{array.shape[0]} rows exceed the batch limit of {self.max_batch}; "
                                     "split the request")
        loop = asyncio.get_running_loop()
        pending = _Pending(array, tensors.wants_json(accept), loop.create_future())
        self.queue.append(pending)
        self._dispatch(loop)
        return pending.future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.queue and self.running < self.slots:
            head = self.queue[0]
            batch, rows = [], 0
            for item in self.queue:
                if item.key == head.key and rows + item.array.shape[0] <= self.max_batch:
                    batch.append(item)
                    rows += item.array.shape[0]
            wait = head.arrived + self.max_wait - time.monotonic()
            if rows < self.max_batch and wait > 0:
                if self._timer is None:
                    self._timer = loop.call_later(wait, self._timer_fired, loop)
                return
            taken = set(map(id, batch))
            self.queue = [item for item in self.queue if id(item) not in taken]
            self.running += 1
            future = loop.run_in_executor(self.pool, self._run, batch)
            future.add_done_callback(functools.partial(self._finished, loop, batch))

    def _timer_fired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop)

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], done: asyncio.Future) -> None:
        self.running -= 1
        try:
            results = done.result()
        except BaseException as exc:  # the pool shut down under it: answer rather than hang the requests
            results = [error_response(503, f"scoring is shutting down: {type(exc).__name__}")] * len(batch)
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)
        self._dispatch(loop)

    def _run(self, batch: list[_Pending]) -> list[Response]:
        """In a worker thread: stack, call run_batch once, split and encode. Never raises."""
        return score_stacked(self.batch_fn(), [item.array for item in batch], [item.as_json for item in batch])


def score_stacked(fn: Callable[[np.ndarray], Any] | None, arrays: list[np.ndarray],
                  as_json: list[bool]) -> list[Response]:
    """Score tensors of one dtype and row shape with one ``run_batch`` call: stack, call, split and encode each
    caller's rows (as JSON where ``as_json`` says so). Never raises: a failure answers every caller with a 500."""
    try:
        if fn is None:
            raise RuntimeError("the entry script has no run_batch() any more")
        stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        output = fn(stacked)
        parts = _split(output, [array.shape[0] for array in arrays])
    except Exception:
        failed = internal_error("the entry script's run_batch() failed",
                                f"run_batch() failed for a batch of {len(arrays)} requests", traceback.format_exc())
        return [failed] * len(arrays)
    results = []
    for json_wanted, part in zip(as_json, parts):
        body, content_type = tensors.encode(part, as_json=json_wanted)
        results.append(Response(200, body, content_type))
    return results


def _split(output: Any, sizes: list[int]) -> list[Any]:
    """Each request's rows of run_batch's output: one array, a dict of arrays or a list/tuple of arrays.

    Raises:
        ValueError: the output is not arrays or their first dimension is not the batch's row count.
    """
    total = sum(sizes)
    if isinstance(output, (list, tuple)):
        output = {f"output_{i}": value for i, value in enumerate(output)}
    named = output if isinstance(output, dict) else {"": output}
    arrays = {}
    for name, value in named.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(f"run_batch() returned {name or 'an array'} of shape {value.shape}; its first "
                             f"dimension must be the {total} rows it was given")
        arrays[name] = value
    offsets = np.cumsum([0] + sizes)
    parts: list[Any] = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        rows = {name: value[start:end] for name, value in arrays.items()}
        parts.append(rows[""] if "" in rows else rows)
    return parts
