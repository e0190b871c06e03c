"""One JSON POST to an LLM endpoint that keeps its credentials and its time in bounds.

urllib's `urlopen` is not enough for a request that carries an API key: it follows a redirect to
another host with the `Authorization` header still on, its timeout bounds each socket read (a
server sending one byte a second holds the call forever) and it reads a body of any size. Here:

- a redirect is followed only to the same scheme, host and port; one to anywhere else is an error
  and nothing is sent there;
- `timeout` is a deadline for the whole exchange (connect, headers, body, redirects): the request
  runs in a worker thread, and at the deadline its socket is shut down and the call fails;
- the body is read up to `max_bytes`; a longer one is an error.

Proxies from the environment (HTTP_PROXY, ...) are not used.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

MAX_REPLY_BYTES = 8 * 2**20  # a chat reply is a few kB; a layout reply far less
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


class _Exchange:
    """The request's state, shared between the caller and the worker thread."""

    def __init__(self):
        self.sock: socket.socket | None = None
        self.result: dict | None = None
        self.error: Exception | None = None
        self.cancelled = False


def post_json(url: str, payload: dict, *, headers: dict[str, str], timeout: float,
              max_bytes: int = MAX_REPLY_BYTES) -> dict:
    """POST `payload` as JSON to `url` and return the JSON object it answers, or a ValueError
    naming the endpoint and what went wrong."""
    if not timeout > 0:
        raise ValueError(f"the LLM timeout must be > 0 seconds, got {timeout!r}")
    exchange = _Exchange()
    body = json.dumps(payload).encode()
    deadline = time.monotonic() + timeout
    worker = threading.Thread(target=_run, args=(exchange, url, body, headers, deadline, max_bytes), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        exchange.cancelled = True
        _shut(exchange.sock)
        worker.join(1.0)
        raise ValueError(f"LLM endpoint {url} did not answer within llm.timeout={timeout:g} s")
    if exchange.error is not None:
        raise exchange.error
    return exchange.result


def _run(exchange: _Exchange, url: str, body: bytes, headers: dict, deadline: float, max_bytes: int) -> None:
    try:
        exchange.result = _exchange(exchange, url, body, headers, deadline, max_bytes)
    except ValueError as error:
        exchange.error = error
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        exchange.error = ValueError(f"cannot reach the LLM endpoint {url}: {reason}")


def _exchange(exchange: _Exchange, url: str, body: bytes, headers: dict, deadline: float, max_bytes: int) -> dict:
    origin = _origin(url)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        status, reason, location, data = _post_once(exchange, current, body, headers, deadline, max_bytes)
        if status in REDIRECTS and location:
            target = urljoin(current, location)
            if _origin(target) != origin:
                raise ValueError(f"LLM endpoint {url} redirected to {_origin(target)}, another host: not followed "
                                 "(the API key would go with it); give that endpoint as llm.url if you trust it")
            current = target
            continue
        if not 200 <= status < 300:
            raise ValueError(f"LLM endpoint {url} answered HTTP {status}: {reason}")
        return _json_object(data, url)
    raise ValueError(f"LLM endpoint {url} redirected more than {MAX_REDIRECTS} times")


def _post_once(exchange: _Exchange, url: str, body: bytes, headers: dict, deadline: float,
               max_bytes: int) -> tuple[int, str, str | None, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"llm.url {url!r} is not an http(s) URL")
    remaining = max(0.01, deadline - time.monotonic())
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=remaining,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=remaining)
    response = None
    try:
        connection.connect()
        exchange.sock = connection.sock  # kept: http.client drops its own on a closing response
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = connection.getresponse()
        data = bytearray()
        while chunk := response.read(65536):
            data += chunk
            if len(data) > max_bytes:
                raise ValueError(f"LLM endpoint {url} answered more than {max_bytes / 2**20:g} MB: not read further")
            if exchange.cancelled or time.monotonic() > deadline:
                raise ValueError(f"LLM endpoint {url} did not finish its answer in time")
        return response.status, response.reason, response.getheader("Location"), bytes(data)
    finally:
        # The response holds its own reference to the socket (http.client drops the
        # connection's on a closing response): close both, or a server mid-write hangs.
        if response is not None:
            response.close()
        connection.close()


def _json_object(data: bytes, url: str) -> dict:
    try:
        payload = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"LLM endpoint {url} answered something that is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"LLM endpoint {url} did not answer JSON (or nested it too deeply)") from None
    if not isinstance(payload, dict):
        raise ValueError(f"LLM endpoint {url} answered JSON that is not an object ({type(payload).__name__})")
    return payload


def _origin(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _shut(sock: socket.socket | None) -> None:
    """Unblock the worker's read: shutting the socket down makes it return at once."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
