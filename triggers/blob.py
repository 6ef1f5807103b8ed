"""The blob trigger of the local host: scan a container, score new or updated blobs once, retry, poison.

Side effects: Azure Storage (or Azurite) through azure-storage-blob and azure-storage-queue. It follows the
Functions host's contract: a receipt blob per (function, blob ETag) in ``azure-webjobs-hosts`` so a restart
reprocesses nothing and an updated blob (new ETag) is scored again; blobs that existed before start are
processed; after the last of ``max_tries`` failures a JSON record goes to the ``webjobs-blobtrigger-poison``
queue. A receipt left ``Incomplete`` by a host that died is taken over, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from triggers.bindings import OutValue, TriggerError, resolve_settings
from triggers.host import IndexedFunction

log = logging.getLogger("triggers.blob")
HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"


@dataclass(frozen=True)
class BlobPattern:
    """A trigger path split into its container and a regex over blob names with named captures."""

    container: str
    regex: re.Pattern[str]
    prefix: str

    @classmethod
    def parse(cls, path: str) -> "BlobPattern":
        """``input/{name}.json`` -> container ``input``, captures non-greedy (they may span ``/``)."""
        container, _, pattern = path.partition("/")
        out, prefix, literal = "", "", True
        for part in re.split(r"(\{\{|\}\}|\{[^{}]*\})", pattern):
            if part in ("{{", "}}"):
                out += re.escape(part[0])
                prefix += part[0] if literal else ""
            elif part.startswith("{"):
                out += f"(?P<{part[1:-1]}>.+?)"
                literal = False
            else:
                out += re.escape(part)
                prefix += part if literal else ""
        return cls(container, re.compile(f"^{out}$"), prefix)


def fill_path(template: str, captures: Mapping[str, str]) -> str:
    """Fill an output path's ``{name}`` expressions (and the ``{rand-guid}``/``{DateTime}`` built-ins)."""
    values = {**captures, "rand-guid": str(uuid.uuid4()),
              "DateTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")}
    return re.sub(r"\{([^{}]*)\}", lambda m: values[m.group(1)], template)


class BlobTrigger:
    """Drives one blob-triggered function against a storage account."""

    def __init__(self, fn: IndexedFunction, *, env: Mapping[str, str] | None = None, app_name: str = "edgepack",
                 max_tries: int = 5, poll_seconds: float = 1.0, retry_delay: float = 0.2) -> None:
        env = dict(os.environ if env is None else env)
        trigger = fn.trigger
        output = next((b for b in fn.bindings if b["type"] == "blob" and b["direction"] == "OUT"), None)
        setting = trigger.get("connection") or "AzureWebJobsStorage"
        if not env.get(setting):
            raise TriggerError(f"function '{fn.name}': connection setting '{setting}' is not set "
                                   "(give the storage connection string, e.g. edgepack run --env)")
        self.fn, self.max_tries, self.poll, self.retry_delay = fn, max_tries, poll_seconds, retry_delay
        self.pattern = BlobPattern.parse(resolve_settings(trigger["path"], env))
        self.output = (output["name"], resolve_settings(output["path"], env)) if output else None
        self.input_name = trigger["name"]
        self.service = BlobServiceClient.from_connection_string(env[setting])
        self.poison = QueueClient.from_connection_string(env[setting], POISON_QUEUE)
        host_id = env.get("AzureFunctionsWebHost__hostid") or app_name
        self.function_id = f"{app_name}.Functions.{fn.name}"
        self.receipt_root = f"blobreceipts/{host_id}/{self.function_id}"
        self._claimed: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Scan until ``stop`` is set; storage errors are logged and the scan goes on."""
        containers = [self.pattern.container, HOSTS_CONTAINER]
        if self.output:
            containers.append(self.output[1].partition("/")[0])
        for container in containers:
            try:
                self.service.create_container(container)
            except ResourceExistsError:
                pass
        log.info("blob trigger %s watching %s/%s", self.fn.name, self.pattern.container, self.pattern.regex.pattern)
        while not stop.is_set():
            try:
                self.scan_once()
            except Exception:  # noqa: BLE001 - a storage hiccup must not stop the host; it is logged, then retried
                log.exception("blob trigger %s: scan failed; retrying", self.fn.name)
            stop.wait(self.poll)

    def scan_once(self) -> int:
        """One pass over the container; returns how many blobs were handled (scored or poisoned)."""
        container = self.service.get_container_client(self.pattern.container)
        handled = 0
        for props in container.list_blobs(name_starts_with=self.pattern.prefix or None):
            match = self.pattern.regex.match(props.name)
            if match and self._claim(props.name, props.etag):
                self._process(props.name, props.etag, match.groupdict())
                handled += 1
        return handled

    def _receipt(self, name: str, etag: str) -> Any:
        path = f"{self.receipt_root}/{etag.strip(chr(34))}/{self.pattern.container}/{name}"
        return self.service.get_blob_client(HOSTS_CONTAINER, path)

    def _claim(self, name: str, etag: str) -> bool:
        """Create the receipt (only if none exists); take over an Incomplete one left by a host that died."""
        receipt = self._receipt(name, etag)
        try:
            receipt.upload_blob(b"", metadata={"Incomplete": "true"}, overwrite=False)
        except ResourceExistsError:
            if receipt.url in self._claimed or "Incomplete" not in receipt.get_blob_properties().metadata:
                return False
        self._claimed.add(receipt.url)
        return True

    def _process(self, name: str, etag: str, captures: dict[str, str]) -> None:
        started = time.perf_counter()
        blob = self.service.get_blob_client(self.pattern.container, name)
        try:
            data = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified).readall()
        except (ResourceModifiedError, ResourceNotFoundError):
            self._receipt(name, etag).delete_blob()  # changed or gone since listed: the next scan sees the new ETag
            return
        error = None
        for attempt in range(1, self.max_tries + 1):
            try:
                self._invoke(name, blob.url, data, captures)
                outcome = f"succeeded (try {attempt})"
                break
            except Exception as exc:  # noqa: BLE001 - the user function may raise anything; it is retried
                error = exc
                log.warning("function %s failed on %s/%s (try %d of %d): %s", self.fn.name,
                            self.pattern.container, name, attempt, self.max_tries, exc)
                time.sleep(self.retry_delay * attempt)
        else:
            self._poison(name, etag)
            outcome = f"poisoned after {self.max_tries} tries: {error}"
        self._receipt(name, etag).set_blob_metadata({})
        log.info("invoked %s on %s/%s: %s, %.1fms", self.fn.name, self.pattern.container, name, outcome,
                 (time.perf_counter() - started) * 1000)

    def _invoke(self, name: str, url: str, data: bytes, captures: dict[str, str]) -> None:
        stream = InputStream(data=data, name=f"{self.pattern.container}/{name}", uri=url, length=len(data))
        kwargs: dict[str, Any] = {self.input_name: stream}
        out = OutValue()
        if self.output:
            kwargs[self.output[0]] = out
        self.fn.call(**kwargs)
        if self.output and out.value is not None:
            container, _, path = fill_path(self.output[1], captures).partition("/")
            value = out.value.encode() if isinstance(out.value, str) else out.value
            self.service.get_blob_client(container, path).upload_blob(value, overwrite=True)

    def _poison(self, name: str, etag: str) -> None:
        try:
            self.poison.create_queue()
        except ResourceExistsError:
            pass
        record = {"FunctionId": self.function_id, "BlobType": "BlockBlob", "ContainerName": self.pattern.container,
                  "BlobName": name, "ETag": etag}
        self.poison.send_message(json.dumps(record))
