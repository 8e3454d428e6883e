"""One logging setup: one line per event, a fixed event name plus key=value details (or JSON).

Every line passes a last-resort redactor that masks any registered secret text, so a key
that slipped into an exception message from a library still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

REDACTED = "<SECRET>"

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(*texts: str) -> None:
    """Remember secret text (in every form it may be printed in) so the formatter masks it."""
    global _secrets  # noqa: PLW0603 - one process-wide registry, replaced atomically
    cleaned = {t for t in texts if len(t) >= 8}
    if not cleaned - _secrets:
        return
    with _secrets_lock:
        _secrets = _secrets | cleaned


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def event(
    logger: logging.Logger,
    name: str,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log one event: ``name`` is a fixed identifier, ``fields`` its details."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields}, stacklevel=2, exc_info=exc_info)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format(round(value, 3), "f").rstrip("0").rstrip(".")
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        text = json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            "vault-entrypoint",
            f"level={record.levelname.lower()}",
            f"component={record.name.rsplit('.', 1)[-1]}",
            f"event={_plain(record.getMessage())}",
        ]
        parts += [f"{k}={_plain(v)}" for k, v in _fields(record).items()]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(f"exception={_plain(repr(record.exc_info[1]))}")
        return redact(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "logger": "vault-entrypoint",
            "level": record.levelname.lower(),
            "component": record.name.rsplit(".", 1)[-1],
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            doc["exception"] = repr(record.exc_info[1])
        return redact(json.dumps(doc, default=str))


def setup(log_format: str = "text", level: str = "info") -> None:
    """Configure the root of this package's loggers; safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger("entrypoint")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
