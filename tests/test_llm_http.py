"""The LLM client on local servers (127.0.0.1): the API key never goes to another host, the
timeout bounds the whole answer, the answer's size is capped, malformed answers are one line."""

import json
import socket
import threading
import time

import pytest

from composer.inference.http import post_json
from composer.inference.layout import LayoutClient
from tests.local_server import LocalServer
from tests.test_layout import GOOD, _ChatServer


def _redirect_to(location):
    def handle(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return handle


def test_the_key_does_not_follow_a_redirect_to_another_host():
    other = _ChatServer(GOOD)  # another port: another origin
    redirecting = LocalServer(_redirect_to(other.url + "/chat/completions"))
    try:
        with pytest.raises(ValueError, match="redirected to http://127.0.0.1:.*another host: not followed"):
            LayoutClient(redirecting.url, model="m", api_key="sk-secret", timeout=10)("a red circle")
    finally:
        redirecting.close()
        other.close()
    assert redirecting.received and redirecting.received[0][2] == "Bearer sk-secret"
    assert other.received == []  # nothing, and so no key, reached the other host


def test_a_redirect_on_the_same_host_is_followed():
    def handle(handler):
        if handler.path.startswith("/v1/"):
            _redirect_to("/v2/chat/completions")(handler)
            return
        payload = json.dumps({"choices": [{"message": {"content": GOOD}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    server = LocalServer(handle)
    try:
        layout = LayoutClient(server.url, model="m", api_key="k", timeout=10)("a red circle")
    finally:
        server.close()
    assert [path for path, _, _ in server.received] == ["/v1/chat/completions", "/v2/chat/completions"]
    assert len(layout.objects) == 2


def _dripping_server(byte_every: float):
    """A raw socket server that answers one byte every `byte_every` seconds, for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve():
        connection, _ = listener.accept()
        connection.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000
        try:
            for byte in answer:
                if stop.is_set():
                    break
                connection.sendall(bytes([byte]))
                time.sleep(byte_every)
        except OSError:
            pass
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1", stop, listener


def test_the_timeout_bounds_the_whole_answer_not_each_read():
    url, stop, listener = _dripping_server(0.05)  # each read succeeds well within the timeout
    started = time.monotonic()
    try:
        with pytest.raises(ValueError, match=r"did not answer within llm.timeout=1 s"):
            LayoutClient(url, model="m", timeout=1)("a red circle")
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 5


def test_an_answer_larger_than_the_cap_is_not_read_whole():
    def handle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(50 * 2**20))
        handler.end_headers()
        try:
            for _ in range(50):
                handler.wfile.write(b" " * 2**20)
        except OSError:  # the client hung up at the cap
            pass

    server = LocalServer(handle)
    try:
        with pytest.raises(ValueError, match="answered more than 1 MB"):
            post_json(server.url, {}, headers={}, timeout=30, max_bytes=2**20)
    finally:
        server.close()


def _answering(body: bytes):
    def handle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return handle


@pytest.mark.parametrize("body, message", [
    (json.dumps({"choices": [{"message": {"content": None}}]}).encode(), "answered NoneType as the message content"),
    (json.dumps({"choices": [{"message": {"content": 5}}]}).encode(), "answered int as the message content"),
    (json.dumps({"choices": [{"message": {"content": ["x"]}}]}).encode(), "answered list as the message content"),
    (b"[" * 100_000 + b"]" * 100_000, "did not answer JSON"),
    (b"\xff\xfe garbage \x00", "not UTF-8 text"),
    (json.dumps([1, 2]).encode(), "JSON that is not an object"),
    (json.dumps({"choices": [{"message": {"content": "Objects: " + "[" * 5000 + "]" * 5000}}]}).encode(),
     "objects are not a list"),
    (json.dumps({"choices": [{"message": {"content": "Objects: [('a', [1" + "0" * 400 + ", 0, 5, 5])]"}}]}).encode(),
     "is not \\[x, y, width, height\\]"),
])
def test_malformed_answers_are_one_line_errors_naming_the_endpoint(body, message):
    server = LocalServer(_answering(body))
    try:
        with pytest.raises(ValueError, match=message):
            LayoutClient(server.url, model="m", timeout=10)("a red circle")
    finally:
        server.close()
