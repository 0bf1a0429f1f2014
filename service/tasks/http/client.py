"""The `http` task: one outbound HTTP/1.1 request over pool_core sockets, following redirects.

`HttpClient(policy).http` is the task function; `Registry.with_builtins` registers it as `http`. Each hop
(the first request and every redirect) resolves its host off the hub, checks the addresses against the
policy's allow-list, and uses a kept-alive connection to that (scheme, host, port) when one is idle.
`timeout` bounds the whole call — queueing for a connection slot, DNS, connecting, TLS, every redirect
and reading the body — and expires as `HttpTimeout`.

Result: `{status, headers, url, elapsed_s}` plus `json` (the parsed body, when the response says it is
JSON and it parses) or `body` (text: the declared charset, else UTF-8, undecodable bytes replaced).
Header names are lower-cased; repeated headers are joined with ", ". `url` is the final URL.
"""

from __future__ import annotations

import codecs
import http.client
import json as jsonlib
import ssl
import time
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from pool_core import Timeout

from ..decorator import reject
from .connections import Connection, ConnectionPool, Key, Lease
from .errors import (
    HttpConnectError,
    HttpError,
    HttpProtocolError,
    HttpTimeout,
    ResponseTooLarge,
    TLSError,
    TooManyRedirects,
)
from .policy import HttpPolicy, resolve_allowed

__all__ = ["HttpClient", "MAX_REDIRECTS", "MAX_TIMEOUT"]

MAX_TIMEOUT = 3600.0
MAX_REDIRECTS = 30
_READ_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_SET_BY_TASK = frozenset({"content-length", "transfer-encoding"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


def _check_url(url: str) -> str:
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("url must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("url has no host")
    try:
        port = parts.port  # raises for a bad port
    except ValueError:
        raise ValueError("url has an invalid port") from None
    if port == 0:  # no server listens on port 0: it would silently become the default port
        raise ValueError("url has an invalid port (0)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the url are not supported: send an Authorization header")
    try:
        _ascii_host(parts.hostname)
    except UnicodeError:
        raise ValueError("url host is not a valid host name") from None
    return url


def _ascii_host(host: str) -> str:
    """The host as http.client and DNS need it: IDNA-encoded if it is not ASCII."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


def _check_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    for name, value in (headers or {}).items():
        if name.lower() in _SET_BY_TASK:
            raise ValueError(f"header {name!r} is set by the task from the body")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r}: values must be Latin-1 text (encode others, e.g. RFC 8187)") from None
    return headers


def _check_body(kwargs: dict[str, Any]) -> None:
    if kwargs.get("body") is not None and kwargs.get("json") is not None:
        reject("json", "give either body or json, not both")


#: the same rule in the args schema (see ArgsValidator)
_check_body.json_schema = {  # type: ignore[attr-defined]
    "not": {"required": ["body", "json"], "properties": {"body": {"type": "string"}, "json": {"not": {"type": "null"}}}}
}


def _any_case(name: str) -> str:
    return "".join(f"[{ch.upper()}{ch}]" if ch.isalpha() else ch for ch in name)


_LATIN1_LINE = r"^[\x01-\x09\x0b\x0c\x0e-\xff]*$"  # a header value: Latin-1 without CR, LF or NUL
#: what the header checks accept, stated exactly: token names other than those the task sets, Latin-1 values
#: without CR, LF or NUL (the pydantic schema of the dict would let any other name through)
_HEADERS_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "propertyNames": {"pattern": _TOKEN, "maxLength": 256,
                              "not": {"pattern": f"^({'|'.join(map(_any_case, sorted(_SET_BY_TASK)))})$"}},
            "additionalProperties": {"type": "string", "maxLength": 8192, "pattern": _LATIN1_LINE},
        },
        {"type": "null"},
    ],
    "default": None,
    "description": "request headers",
}  # fmt: skip


Url = Annotated[str, AfterValidator(_check_url), Field(description="http:// or https:// URL", max_length=8192)]
Method = Annotated[str, StringConstraints(pattern=_TOKEN, max_length=32), Field(description="HTTP method")]
HeaderName = Annotated[str, StringConstraints(pattern=_TOKEN, max_length=256)]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[^\r\n\x00]*$", max_length=8192)]
Headers = Annotated[
    dict[HeaderName, HeaderValue] | None, AfterValidator(_check_headers), WithJsonSchema(_HEADERS_SCHEMA)
]
Body = Annotated[str | None, Field(description="request body, sent as UTF-8 (not with json)")]
JsonBody = Annotated[Any, Field(description="request body as JSON, with Content-Type application/json")]
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT, description="seconds for the whole call")]
Redirects = Annotated[int, Field(ge=0, le=MAX_REDIRECTS, description="redirects to follow (0: none)")]


class HttpClient:
    """The http task bound to one policy and its own keep-alive connection pool."""

    def __init__(self, policy: HttpPolicy | None = None) -> None:
        self.policy = policy or HttpPolicy()
        self.pool = ConnectionPool(self.policy.max_per_host, self.policy.max_idle, self.policy.idle_timeout)
        self._ssl_context: ssl.SSLContext | None = None

    check = staticmethod(_check_body)

    def close(self) -> None:
        """Close the idle keep-alive connections."""
        self.pool.close()

    def ssl_context(self) -> ssl.SSLContext:
        """The verifying TLS context (system CAs, or the policy's `ca_file`), created on first use."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.policy.ca_file)
        return self._ssl_context

    def http(
        self,
        url: Url,
        method: Method = "GET",
        headers: Headers = None,
        body: Body = None,
        json: JsonBody = None,
        timeout: Seconds = 10.0,
        max_redirects: Redirects = 5,
    ) -> dict[str, Any]:
        """Make an outbound HTTP/1.1 request; returns {status, headers, body | json, url, elapsed_s}."""
        started = time.monotonic()
        method = method.upper()
        request_headers = dict(headers or {})
        payload: bytes | None = None
        if json is not None:
            payload = jsonlib.dumps(json, separators=(",", ":"), allow_nan=False).encode()
            if not any(name.lower() == "content-type" for name in request_headers):
                request_headers["Content-Type"] = "application/json"
        elif body is not None:
            payload = body.encode("utf-8")
        deadline = Timeout(timeout)
        try:
            for _hop in range(max_redirects + 1):
                status, response_headers, data = self._exchange(method, url, request_headers, payload, timeout)
                location = response_headers.get("location")
                if status not in _REDIRECTS or location is None or max_redirects == 0:
                    break
                url, method, payload, request_headers = _redirect(url, location, status, method, payload,
                                                                  request_headers)  # fmt: skip
            else:
                raise TooManyRedirects(f"more than {max_redirects} redirects (last to {url})")
        except Timeout as exc:
            if exc is not deadline:
                raise
            raise HttpTimeout(f"{method} {url}: no complete response within {timeout} s") from None
        finally:
            deadline.cancel()
        result: dict[str, Any] = {"status": status, "headers": response_headers, "url": url}
        result.update(_decode(data, response_headers.get("content-type", "")))
        result["elapsed_s"] = round(time.monotonic() - started, 6)
        return result

    def _exchange(self, method: str, url: str, headers: dict[str, str], payload: bytes | None,
                  timeout: float) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One request/response on a pooled connection: (status, headers, body)."""
        key, target = _key_and_target(url)
        lease = self.pool.lease(key)
        reuse = False
        try:
            response = self._send(lease, key, method, target, headers, payload, timeout)
            status, response_headers = response.status, _headers(response)
            data = self._read(response, key)
            reuse = not response.will_close
            return status, response_headers, data
        except HttpError:
            raise
        except TimeoutError:
            raise HttpTimeout(f"{method} {url}: no complete response within {timeout} s") from None
        except ssl.SSLError as exc:
            raise TLSError(f"TLS error with {key[1]}:{key[2]}: {exc}") from None
        except OSError as exc:  # including http.client.RemoteDisconnected
            raise HttpConnectError(f"{method} {url}: connection failed: {exc!r}") from None
        except http.client.HTTPException as exc:
            raise HttpProtocolError(f"{method} {url}: bad response: {exc!r}") from None
        finally:
            lease.release(reuse)

    def _send(self, lease: Lease, key: Key, method: str, target: str, headers: dict[str, str],
              payload: bytes | None, timeout: float) -> http.client.HTTPResponse:  # fmt: skip
        """Send the request and read the status line; a reused connection the server had closed is
        replaced by a new one once (for idempotent methods, so nothing is ever sent twice otherwise)."""
        while True:
            conn = lease.conn
            if conn is None:
                addresses = resolve_allowed(key[1], key[2], self.policy)
                context = self.ssl_context() if key[0] == "https" else None
                conn = lease.conn = Connection(key, addresses, timeout, context)
            else:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, target, body=payload, headers=headers)
                return conn.getresponse()
            except (ConnectionError, http.client.BadStatusLine):
                if not conn.reused or method not in _IDEMPOTENT:
                    raise
                conn.close()
                lease.conn = None

    def _read(self, response: http.client.HTTPResponse, key: Key) -> bytes:
        """The whole body, refusing more than the policy's `max_response_bytes`."""
        cap = self.policy.max_response_bytes
        if response.length is not None and response.length > cap:  # 0 for HEAD, None if unknown/chunked
            raise ResponseTooLarge(f"response from {key[1]} declares {response.length} bytes; the limit is {cap}")
        chunks, total = [], 0
        while True:
            chunk = response.read(_READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > cap:
                raise ResponseTooLarge(f"response from {key[1]} is larger than the limit of {cap} bytes")
            chunks.append(chunk)


def _key_and_target(url: str) -> tuple[Key, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = _ascii_host((parts.hostname or "").lower())
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, host, port), target


def _redirect(url: str, location: str, status: int, method: str, payload: bytes | None,
              headers: dict[str, str]) -> tuple[str, str, bytes | None, dict[str, str]]:  # fmt: skip
    """The next hop of a redirect: (url, method, payload, headers)."""
    target = urljoin(url, location.strip())
    try:
        _check_url(target)
    except ValueError as exc:
        raise HttpProtocolError(f"redirect from {url} to an unusable location {location!r}: {exc}") from None
    headers = dict(headers)
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, payload = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if _key_and_target(target)[0] != _key_and_target(url)[0]:  # another origin: do not leak credentials
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    return target, method, payload, headers


def _headers(response: http.client.HTTPResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.getheaders():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _decode(data: bytes, content_type: str) -> dict[str, Any]:
    """`{"json": value}` for a JSON response that parses, else `{"body": text}`."""
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return {"json": jsonlib.loads(data, parse_constant=_no_constant)}
        except ValueError:
            pass
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return {"body": data.decode(charset, errors="replace")}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
