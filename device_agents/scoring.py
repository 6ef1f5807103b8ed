"""Turning stored inputs into results: the entry script's run() per message, or one run_batch() call for the
binary tensors among them. Pure but for the entry script itself; never raises (a failure is a result too).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from edgepack.runtime import tensors
from edgepack.runtime.batching import score_stacked
from edgepack.runtime.response import Response, error_response
from edgepack.runtime.scoring import Runtime

from device_agents.queues import Envelope

# Result ids are derived from input ids, so a replayed input yields a result with the same id (dedupe by id).
_RESULT_IDS = uuid.UUID("5f0c4d36-7a59-4b8e-9a53-4f4c1e2d9b10")
MAX_BATCH = 32


def result_id(input_id: str) -> str:
    """The message id of the result of the input whose id is ``input_id`` (stable across replays)."""
    return str(uuid.uuid5(_RESULT_IDS, input_id))


@dataclass(frozen=True)
class Scored:
    """One input's result, and how long scoring it took."""

    result: Envelope
    seconds: float
    failed: bool


def _envelope(message: Envelope, response: Response, output: str, model: dict[str, Any] | None) -> Envelope:
    properties = {"status": str(response.status), "input": message.channel}
    if model:
        properties["modelVersion"] = str(model.get("version", ""))
    if response.status >= 400:
        properties["error"] = "true"
    return Envelope(channel=output, message_id=result_id(message.message_id), body=response.body,
                    correlation_id=message.correlation_id or message.message_id,
                    content_type=response.content_type.split(";")[0], content_encoding="utf-8",
                    properties=properties)


def score_messages(runtime: Runtime, messages: list[Envelope], *, module_input: str,
                   output: str) -> list[Scored]:
    """The results of ``messages`` in their order."""
    responses: dict[int, tuple[Response, float]] = {}
    tensor_groups: dict[tuple, list[tuple[int, Any]]] = {}
    for index, message in enumerate(messages):
        if message.channel != module_input:
            responses[index] = (error_response(404, f"this module scores messages sent to input "
                                                    f"'{module_input}', not '{message.channel}'"), 0.0)
        elif runtime.run_batch is not None and tensors.is_tensor_request(message.content_type, message.body):
            try:
                array = tensors.decode(message.body)
            except ValueError as exc:
                responses[index] = (error_response(400, f"message body: {exc}"), 0.0)
                continue
            tensor_groups.setdefault((array.dtype.str, array.shape[1:]), []).append((index, array))
    for group in tensor_groups.values():
        started = time.perf_counter()
        answers = score_stacked(runtime.run_batch, [array for _, array in group], [True] * len(group))
        share = (time.perf_counter() - started) / len(group)
        for (index, _), answer in zip(group, answers):
            responses[index] = (answer, share)
    results = []
    for index, message in enumerate(messages):
        if index not in responses:
            started = time.perf_counter()
            responses[index] = (runtime.score(message.body, message.content_type), time.perf_counter() - started)
        response, seconds = responses[index]
        results.append(Scored(_envelope(message, response, output, runtime.config.model), seconds,
                              response.status >= 400))
    return results
