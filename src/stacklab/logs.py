"""Log lines an operator can use: every line carries its context, as text or as JSON lines.

Context comes from two places: the `extra=` of a call (`log.info("stack created", extra={"stack": ...})`)
and the fields bound for the current task (`bind(request_id=..., env_id=...)`), which flow into everything
logged while handling a request, tasks it starts included, without each call repeating them. uvicorn's own
loggers (access and error) go through the same handler, so one format covers the whole process; query
strings are cut from the paths they log, since a terminal's URL carries its token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("stacklab_log_context", default={})  # noqa: B039
# Attributes every LogRecord has, and what formatters and uvicorn add: the rest is context from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
FIRST_FIELDS = ("request_id", "env_id", "course", "lab", "learner", "provider", "stack")
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
_QUERY = re.compile(r"\?\S*")


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to every line logged from now on in this task (and the tasks it starts)."""
    return _CONTEXT.set({**_CONTEXT.get(), **fields})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    _CONTEXT.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """`bind` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current(name: str) -> Any:
    """A bound field of this task (None when not bound), e.g. the request id for an error body."""
    return _CONTEXT.get().get(name)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context: bound fields, then its own `extra=` (which win), well-known ones first."""
    fields = {**_CONTEXT.get(), **{k: v for k, v in vars(record).items() if k not in _STANDARD}}
    first = {name: fields.pop(name) for name in FIRST_FIELDS if fields.get(name) is not None}
    return {**first, **dict(sorted(fields.items()))}


class HideQueries(logging.Filter):
    """uvicorn logs request paths with their query; a terminal's carries its token: cut it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
            record.args = tuple(_QUERY.sub("", a) if isinstance(a, str) else a for a in record.args)
        return True


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as fields: client, method, path, http_version, status."""
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        return dict(zip(_ACCESS_FIELDS, record.args, strict=True))
    return {}


def _text_value(value: Any) -> str:
    text = str(value)
    return text if text and not any(c in text for c in ' "=\n') else json.dumps(text)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` (traceback lines after)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{k}={_text_value(v)}" for k, v in context_of(record).items())
        return f"{line} {context}" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the context fields as keys,
    and `exception` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_access_fields(record),
            **context_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(log_format: str = "text", level: str = "warning") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process, uvicorn's loggers included (its log_config)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"hide_queries": {"()": HideQueries}},
        "formatters": {"stacklab": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "stacklab",
                "filters": ["hide_queries"],
            }
        },
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": "NOTSET"}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def configure(log_format: str = "text", level: str = "warning") -> dict[str, Any]:
    """Set up logging for this process; returns the configuration (for uvicorn's log_config)."""
    config = logging_config(log_format, level)
    logging.config.dictConfig(config)
    return config
