"""Layouts (LMD): files, LLM replies good and malformed, and the chat client against a local server."""

import json

import pytest

from composer.inference.layout import LayoutClient, load_layout, parse_reply
from tests.local_server import LocalServer

GOOD = ("Objects: [('a red circle', [50, 100, 150, 150]), ('a blue star', [300, 80, 120, 120])]\n"
        "Background prompt: a gray background\nNegative prompt: blurry")


def test_parse_a_good_reply():
    layout = parse_reply(GOOD)
    assert [o.phrase for o in layout.objects] == ["a red circle", "a blue star"]
    assert layout.objects[0].box == pytest.approx((50 / 512, 100 / 512, 200 / 512, 250 / 512))
    assert layout.background == "a gray background" and layout.negative == "blurry"
    assert layout.caption == "a red circle and a blue star on a gray background"


@pytest.mark.parametrize("reply", [
    "Sure! Here is the layout:\n```\n" + GOOD + "\n```\nHope this helps.",
    GOOD.replace("(", "[").replace(")", "]"),
    "objects:  [('a red circle', [50, 100, 150, 150]), ('a blue star', [300, 80, 120, 120])]\nbackground prompt: a "
    "gray background",
    GOOD.replace("[300, 80, 120, 120]", "[400, 80, 120, 120]"),  # pokes out a little: clipped
])
def test_parse_tolerates_fences_prose_lists_case_and_small_overhang(reply):
    layout = parse_reply(reply)
    assert len(layout.objects) == 2 and all(0 <= v <= 1 for o in layout.objects for v in o.box)


@pytest.mark.parametrize("reply, message", [
    ("I cannot do that.", "no 'Objects: \\[...\\]' line"),
    ("Objects: [('a red circle', [50, 100, 150)]\n", "not a list of"),
    ("Objects: [('a red circle', [50, 100, 150])]\n", "is not \\[x, y, width, height\\]"),
    ("Objects: [('a red circle', [50, 100, 0, 150])]\n", "has no area"),
    ("Objects: [('a red circle', [600, 100, 100, 100])]\n", "outside the 512x512 canvas"),
    ("Objects: [['a red circle']]\n", "is not \\(name, \\[x, y, w, h\\]\\)"),
])
def test_malformed_replies_name_what_is_wrong(reply, message):
    with pytest.raises(ValueError, match=message):
        parse_reply(reply)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_layout_files(tmp_path, suffix):
    data = {"background": "a beige background", "negative": "",
            "objects": [{"phrase": "red circle", "box": [0.1, 0.2, 0.4, 0.6]}]}
    path = tmp_path / f"layout{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    layout = load_layout(path)
    assert layout.objects[0].phrase == "red circle" and layout.objects[0].box == (0.1, 0.2, 0.4, 0.6)
    layout.check(max_objects=1)
    with pytest.raises(ValueError, match="at most max_objects=0"):
        layout.check(max_objects=0)


@pytest.mark.parametrize("box, message", [([0.1, 0.2, 1.4, 0.6], "outside \\[0, 1\\]"),
                                          ([0.5, 0.2, 0.1, 0.6], "x1 < x0"), ([0.1, 0.2], "not 4 numbers")])
def test_bad_layout_boxes(tmp_path, box, message):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({"background": "x", "objects": [{"phrase": "thing", "box": box}]}))
    with pytest.raises(ValueError, match=message):
        load_layout(path)


class _ChatServer(LocalServer):
    """A local HTTP server that speaks the OpenAI chat-completions protocol."""

    def __init__(self, reply: str | None, status: int = 200):
        def handle(handler):
            payload = b"not json" if reply is None else json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)

        super().__init__(handle)


def test_client_asks_with_lmd_instructions_and_parses_the_reply():
    server = _ChatServer(GOOD)
    try:
        layout = LayoutClient(server.url, model="local-llm", api_key="secret",
                              timeout=10)("a red circle and a blue star")
    finally:
        server.close()
    assert [o.phrase for o in layout.objects] == ["a red circle", "a blue star"]
    path, body, auth = server.received[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["model"] == "local-llm"
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and roles.count("assistant") >= 2  # in-context examples
    assert body["messages"][-1]["content"].endswith("a red circle and a blue star")


def test_client_errors_are_one_line():
    for server, message in [(_ChatServer("no layout here"), "no 'Objects"), (_ChatServer(None), "did not answer JSON"),
                            (_ChatServer(GOOD, status=500), "HTTP 500")]:
        try:
            with pytest.raises(ValueError, match=message):
                LayoutClient(server.url, model="m", timeout=10)("anything")
        finally:
            server.close()
    closed = _ChatServer(GOOD)
    url = closed.url
    closed.close()
    with pytest.raises(ValueError, match="cannot reach the LLM endpoint"):
        LayoutClient(url, model="m", timeout=5)("anything")
