"""A small blocking HTTP client over `wasi:http`, for the hosts the pipeline grants
(`grants.hosts`). Python's own urllib and http.client do not work inside a component; this
does. Any other host is refused by the engine, and the error says which grant to add."""

import json as _json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import _wit
from .errors import Failed

DEFAULT_BODY_LIMIT = 8 << 20
"""Bytes of response body kept by default: a larger body fails the request."""

_CHUNK = 64 * 1024


class HttpError(Failed):
    """The request could not be made or its response not read (not: a 4xx or 5xx status, which
    is a `Response` like any other)."""


@dataclass
class Response:
    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The first value of the header `name` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise HttpError(f"the response body is not JSON: {e}") from None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def get(url: str, headers: Optional[Dict[str, str]] = None, **options) -> Response:
    return request("GET", url, headers=headers, **options)


def post(url: str, body: Union[bytes, str, None] = None, json=None, **options) -> Response:
    return request("POST", url, body=body, json=json, **options)


def request(
    method: str,
    url: str,
    headers: Optional[Dict[str, str]] = None,
    body: Union[bytes, str, None] = None,
    json=None,
    timeout: Optional[float] = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
) -> Response:
    """Sends one request and reads the whole response (at most `body_limit` bytes of body).
    `json` sends a JSON body with its content type; `timeout` (seconds) bounds the connection
    and each wait for bytes."""
    if _wit.outgoing_handler is None:
        raise HttpError(f"no HTTP outside a component: fake sluice_plugin.http.request in tests ({url})")
    Err, h, streams = _wit.cpt.Err, _wit.http_types, _wit.streams
    outgoing_handler = _wit.outgoing_handler

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"`{url}` is not an absolute http:// or https:// URL")
    headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json)
        headers.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")

    try:
        fields = h.Fields.from_list([(k.lower(), str(v).encode()) for k, v in headers.items()])
    except Err as e:
        raise HttpError(f"invalid request header: {_name(e.value)}") from None
    req = h.OutgoingRequest(fields)
    _set(req.set_method, _method(h, method.upper()), "method", url)
    _set(req.set_scheme, h.Scheme_Https() if parts.scheme == "https" else h.Scheme_Http(), "scheme", url)
    _set(req.set_authority, parts.netloc, "host", url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    _set(req.set_path_with_query, path, "path", url)

    outgoing = req.body()
    if body:
        with outgoing.write() as stream:
            try:
                for start in range(0, len(body), 4096):
                    stream.blocking_write_and_flush(body[start : start + 4096])
            except Err as e:
                raise HttpError(f"sending the body to {url} failed: {_name(e.value)}") from None

    options = None
    if timeout is not None:
        nanos = int(timeout * 1e9)
        options = h.RequestOptions()
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
        options.set_between_bytes_timeout(nanos)
    try:
        pending = outgoing_handler.handle(req, options)
        h.OutgoingBody.finish(outgoing, None)
    except Err as e:
        raise HttpError(f"{method} {url}: {describe_error(e.value)}") from None

    pending.subscribe().block()
    got = pending.get()  # Ok(Ok(response)) | Ok(Err(code)) | Err(()) | None
    if got is None or isinstance(got, Err):
        raise HttpError(f"{method} {url}: the response was already taken")
    if isinstance(got.value, Err):
        raise HttpError(f"{method} {url}: {describe_error(got.value.value)}")
    response = got.value.value

    status = response.status()
    response_headers = [(k, v.decode("utf-8", "replace")) for k, v in response.headers().entries()]
    data = bytearray()
    with response.consume() as incoming, incoming.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(_CHUNK)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise HttpError(f"reading the response of {url} failed: {_name(e.value)}") from None
            data += chunk
            if len(data) > body_limit:
                raise HttpError(f"the response of {url} is larger than {body_limit} bytes")
    return Response(status, response_headers, bytes(data))


def describe_error(code) -> str:
    """A `wasi:http` error code in words."""
    name = type(code).__name__.removeprefix("ErrorCode_")
    if name == "HttpRequestDenied":
        return (
            "the engine refused the request: this host is not granted to the task "
            '(add it to the task\'s grants: grants.hosts = ["HOST"])'
        )
    known = {
        "ConnectionRefused": "connection refused",
        "DnsError": "the host name could not be resolved",
        "ConnectionTimeout": "connection timed out",
        "ConnectionReadTimeout": "timed out waiting for the response",
        "HttpResponseTimeout": "timed out waiting for the response",
        "TlsCertificateError": "the server's TLS certificate was refused",
    }
    return known.get(name, _name(code))


def _name(value) -> str:
    return type(value).__name__.split("_", 1)[-1]


def _method(h, method: str):
    known = {
        "GET": h.Method_Get,
        "HEAD": h.Method_Head,
        "POST": h.Method_Post,
        "PUT": h.Method_Put,
        "DELETE": h.Method_Delete,
        "PATCH": h.Method_Patch,
        "OPTIONS": h.Method_Options,
    }
    return known[method]() if method in known else h.Method_Other(method)


def _set(setter, value, what: str, url: str) -> None:
    try:
        setter(value)
    except _wit.cpt.Err:
        raise HttpError(f"invalid {what} in `{url}`") from None
