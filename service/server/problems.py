"""The problem+json answers the server writes itself, before or instead of the app: a request gunicorn could
not parse, a client too slow to send its body, an app that failed before its response began."""

from __future__ import annotations

import json
import ssl

from gunicorn.http import errors as http

__all__ = ["problem_bytes", "status_of"]

# Gunicorn's own statuses for the errors it raises while reading a request (as Worker.handle_error has them).
_STATUS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
    ((http.InvalidResponseHeader, http.InvalidResponseHeaderName), 500, "Internal Server Error"),
    (http.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http.ConfigurationProblem, 500, "Internal Server Error"),
    (http.LimitRequestLine, 414, "URI Too Long"),
    (http.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http.ExpectationFailed, 417, "Expectation Failed"),
    ((http.ForbiddenProxyRequest, ssl.SSLError), 403, "Forbidden"),
    (http.ParseException, 400, "Bad Request"),  # every other error in what the client sent
)


def status_of(exc: BaseException) -> tuple[int, str]:
    """The status and title of the answer to `exc`, raised while a request was read or handled."""
    for kinds, status, title in _STATUS:
        if isinstance(exc, kinds):
            return status, title
    return 500, "Internal Server Error"


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    """A complete RFC 9457 response that closes the connection."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail or title})
    head = (
        f"HTTP/1.1 {status} {title}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return (head + body).encode()
