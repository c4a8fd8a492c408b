"""Hub tokens kept out of everything hf_sgdr prints, logs or raises.

A Hub endpoint (or a proxy in front of it) may echo the request's `Authorization` header in its error
message; `huggingface_hub` then puts that text into the exception it raises and may log it. `redacting()`
wraps every call that sends a token (the push, the download): while it runs, every log record, whichever
logger and handler it goes to, has its message redacted; an exception leaving it has its message, its whole
chain of causes and the request it carries redacted. `redact()` is what the command line passes its error
lines through. Redacted are the tokens in play (the one passed, `HF_TOKEN`, the stored login), anything
shaped like a Hugging Face token (`hf_...`) and whatever follows `Bearer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

#: What a token is replaced with.
REDACTED = "hf_***"
#: Environment variables `huggingface_hub` reads a token from.
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
#: Token-shaped text (Hugging Face user and organisation tokens) and the credential of an `Authorization` value
#: (`Bearer ...`, `Basic ...`): (pattern, replacement).
_PATTERNS = (
    (re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\b(Bearer|bearer|BEARER|Basic)(\s+)[A-Za-z0-9._~+/=*-]{6,}"), rf"\1\2{REDACTED}"),
)
_factory_lock = threading.Lock()


def known_tokens(token: str | bool | None = None) -> set[str]:
    """The tokens a call may send: `token` when it is a string, the environment's and the stored login's."""
    found = {token} if isinstance(token, str) else set()
    found.update(os.environ[name] for name in TOKEN_VARIABLES if os.environ.get(name))
    with contextlib.suppress(Exception):  # no stored login, an unreadable token file: nothing more to hide
        from huggingface_hub import get_token

        found.add(get_token() or "")
    return {value.strip() for value in found if value and value.strip()}


def redact(text: str, tokens: Iterable[str] | None = None) -> str:
    """`text` with every token in `tokens` (default: `known_tokens()`) and every token-shaped string replaced."""
    for token in sorted(known_tokens() if tokens is None else set(tokens), key=len, reverse=True):
        text = text.replace(token, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, tokens: set[str]) -> Any:
    return redact(value, tokens) if isinstance(value, str) else value


def redact_exception(error: BaseException, tokens: Iterable[str] | None = None) -> BaseException:
    """Redact `error` in place: its arguments and string attributes, the `Authorization` header of the request it
    carries (`huggingface_hub` and httpx errors keep it), and the same for every cause and context in its chain."""
    tokens = known_tokens() if tokens is None else set(tokens)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        with contextlib.suppress(Exception):  # an exception whose args cannot be set keeps them
            current.args = tuple(_redact_value(arg, tokens) for arg in current.args)
        for name, value in list(vars(current).items()):
            if isinstance(value, str):
                setattr(current, name, redact(value, tokens))
        for holder in (current, getattr(current, "response", None)):
            with contextlib.suppress(Exception):  # httpx raises RuntimeError for an unset `request`
                headers = holder.request.headers  # type: ignore[union-attr]
                if "authorization" in headers:
                    headers["authorization"] = REDACTED
        current = current.__cause__ or current.__context__
    return error


@contextlib.contextmanager
def redacting(token: str | bool | None = None) -> Iterator[set[str]]:
    """While it runs, every log record's message is redacted; an exception leaving it is redacted
    (`redact_exception`) before it propagates. Yields the tokens it hides."""
    tokens = known_tokens(token)
    with _factory_lock:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if record.exc_info and record.exc_info[1] is not None:
                redact_exception(record.exc_info[1], tokens)
            message = record.getMessage()
            cleaned = redact(message, tokens)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
    try:
        yield tokens
    except BaseException as error:
        redact_exception(error, tokens)
        raise
    finally:
        with _factory_lock:
            if logging.getLogRecordFactory() is factory:
                logging.setLogRecordFactory(previous)
