"""A closed-loop HTTP/1.1 load generator on asyncio: ``concurrency`` keep-alive connections, each sending the
next request as soon as the previous answer arrived, for a fixed time. Records latencies and statuses."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Latencies (seconds) of the answered requests, and statuses counted."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def build_request(host: str, port: int, path: str, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one POST request."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


async def _client(host: str, port: int, requests: list[bytes], index: int, deadline: float,
                  result: LoadResult) -> None:
    reader = writer = None
    try:
        while time.perf_counter() < deadline:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            index += 1
            status, body, close = await _read_response(reader)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200 and result.first_error is None:
                result.first_error = f"{status}: {body[:300].decode('utf-8', 'replace')}"
            if close:
                writer.close()
                writer = None
    except (OSError, asyncio.IncompleteReadError) as exc:
        result.statuses[0] = result.statuses.get(0, 0) + 1
        if result.first_error is None:
            result.first_error = f"connection failed: {exc}"
    finally:
        if writer is not None:
            writer.close()


async def run_load(host: str, port: int, requests: list[bytes], *, concurrency: int, seconds: float) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``seconds``, cycling through ``requests``."""
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client(host, port, requests, i, deadline, result) for i in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
