"""The errors of the `http` task; a failed job reports the class name as its error type."""

from __future__ import annotations

__all__ = [
    "DestinationNotAllowed",
    "HttpConnectError",
    "HttpError",
    "HttpProtocolError",
    "HttpTimeout",
    "ResponseTooLarge",
    "TLSError",
    "TooManyRedirects",
]


class HttpError(Exception):
    """Base of every error the http task raises on purpose."""


class DestinationNotAllowed(HttpError):
    """The destination resolves only to addresses the allow-list refuses; nothing was sent to it."""


class HttpConnectError(HttpError, ConnectionError):
    """The name did not resolve, or no allowed address accepted the connection."""


class TLSError(HttpError):
    """The TLS handshake failed — most often: the server's certificate could not be verified."""


class HttpTimeout(HttpError, TimeoutError):
    """No complete response (after redirects) within the request's `timeout`."""


class TooManyRedirects(HttpError):
    """More redirects than `max_redirects` (a redirect loop, or a long chain)."""


class ResponseTooLarge(HttpError):
    """The response body is larger than the policy's `max_response_bytes`."""


class HttpProtocolError(HttpError):
    """The server broke HTTP/1.1 (bad status line, truncated body, unusable redirect...)."""
