"""Layouts (LLM-grounded Diffusion, LMD, Lian et al. 2023): a background prompt, a negative prompt
and objects as (phrase, box). Stage 1 asks an LLM for one; stage 2 is grounded generation (our
GLIGEN condition).

Layout files (JSON or YAML) use normalised xyxy boxes:

    {"background": "a gray background", "negative": "",
     "objects": [{"phrase": "red circle", "box": [0.1, 0.2, 0.4, 0.6]}]}

LLM replies use LMD's format, boxes as [x, y, width, height] on a 512 x 512 canvas:

    Objects: [('a red circle', [50, 100, 150, 150]), ('a blue star', [300, 80, 120, 120])]
    Background prompt: a gray background
    Negative prompt: blurry
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from composer.inference.http import post_json

CANVAS = 512

INSTRUCTIONS = (
    "You place objects for an image generator. Given a caption, list every object it mentions, each with "
    "a bounding box, and write a background prompt for the rest of the scene. The image is 512x512 pixels; "
    "[0, 0] is the top-left corner and [512, 512] the bottom-right one. Write each object as "
    "('object name', [x, y, width, height]) with x, y the top-left corner, one object per box, boxes inside "
    "the image. Keep the objects out of the background prompt. If the caption names no background, use "
    "'A realistic scene'. Add a negative prompt (may be empty). Answer in exactly the format of the examples."
)

EXAMPLES = [
    ("two red circles left of a blue star on a gray background",
     "Objects: [('a red circle', [40, 200, 110, 110]), ('a red circle', [170, 210, 100, 100]), "
     "('a blue star', [330, 170, 150, 150])]\nBackground prompt: a gray background\nNegative prompt: "),
    ("a cat sitting on a wooden table next to a vase of flowers",
     "Objects: [('a cat', [60, 160, 220, 230]), ('a wooden table', [0, 330, 512, 182]), "
     "('a vase of flowers', [330, 150, 120, 200])]\nBackground prompt: A realistic scene of a living room\n"
     "Negative prompt: "),
    ("a yellow triangle above a green square, without any circles",
     "Objects: [('a yellow triangle', [190, 60, 140, 130]), ('a green square', [190, 260, 140, 140])]\n"
     "Background prompt: A realistic scene\nNegative prompt: circles"),
]


@dataclass
class LayoutObject:
    phrase: str
    box: tuple[float, float, float, float]  # normalised x0, y0, x1, y1


@dataclass
class Layout:
    background: str
    negative: str = ""
    objects: list[LayoutObject] = field(default_factory=list)

    @property
    def caption(self) -> str:
        """A caption naming the objects and the background, for the caption condition."""
        names = [obj.phrase for obj in self.objects]
        listed = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else ""
        return f"{listed} on {self.background}" if listed else self.background

    def check(self, max_objects: int) -> None:
        if len(self.objects) > max_objects:
            raise ValueError(f"layout has {len(self.objects)} objects; the model takes at most "
                             f"max_objects={max_objects}")
        for obj in self.objects:
            check_box(obj.box, obj.phrase)


def check_box(box, phrase: str = "") -> tuple[float, float, float, float]:
    """A normalised xyxy box, or a ValueError naming what is wrong with it."""
    numbers = _numbers(box)
    if numbers is None:
        raise ValueError(f"box {_short(box)} of {phrase!r} is not 4 numbers (x0, y0, x1, y1)")
    x0, y0, x1, y1 = numbers
    if not all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        raise ValueError(f"box {list(box)} of {phrase!r} is outside [0, 1] (boxes are normalised xyxy)")
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {list(box)} of {phrase!r} has x1 < x0 or y1 < y0 (expected x0, y0, x1, y1)")
    return x0, y0, x1, y1


def _numbers(box) -> tuple[float, ...] | None:
    """The 4 finite floats of `box`, or None (not a list of 4 numbers, or too large for a float)."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        return None
    try:
        numbers = tuple(float(v) for v in box)
    except OverflowError:  # a 400-digit integer
        return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def layout_from_dict(data: dict) -> Layout:
    if not isinstance(data, dict):
        raise ValueError(f"a layout must be a mapping with 'background' and 'objects', got {type(data).__name__}")
    items = data.get("objects", [])
    if not isinstance(items, list):
        raise ValueError(f"a layout's 'objects' must be a list of {{phrase, box}}, got {_short(items)}")
    objects = []
    for item in items:
        if not isinstance(item, dict) or "phrase" not in item or "box" not in item:
            raise ValueError(f"layout object {_short(item)} needs 'phrase' and 'box'")
        objects.append(LayoutObject(str(item["phrase"]), check_box(item["box"], str(item["phrase"]))))
    return Layout(str(data.get("background", "A realistic scene")), str(data.get("negative", "") or ""), objects)


def load_layout(path: str | Path) -> Layout:
    """A layout from a JSON or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"layout file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"layout file {str(path)!r} is not UTF-8 text: expected JSON or YAML") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except RecursionError:
        raise ValueError(f"layout file {str(path)!r} is nested too deeply") from None
    except Exception as error:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"cannot parse layout file {str(path)!r}: {error}") from None
    return layout_from_dict(data)


def parse_reply(reply: str, canvas: int = CANVAS) -> Layout:
    """An LLM's reply in LMD's format -> Layout; a clear ValueError naming what is wrong otherwise.

    Tolerates code fences, extra prose, lists or tuples, and boxes touching the edge by a pixel.
    """
    text = reply.replace("```", "\n")
    found = re.search(r"Objects\s*:\s*(\[.*?\])\s*(?:\n|$)", text, flags=re.IGNORECASE | re.DOTALL)
    if not found:
        raise ValueError(f"the LLM reply has no 'Objects: [...]' line: {reply[:200]!r}")
    try:
        items = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"the LLM reply's objects are not a list of (name, [x, y, w, h]): "
                         f"{found.group(1)[:200]!r}") from None
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"the LLM reply's objects are not a list: {found.group(1)[:200]!r}")
    objects = []
    for item in items:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"object {_short(item)} in the LLM reply is not (name, [x, y, w, h])")
        name, box = item
        numbers = _numbers(box)
        if numbers is None:
            raise ValueError(f"box {_short(box)} of {name!r} in the LLM reply is not [x, y, width, height]")
        x, y, width, height = numbers
        if width <= 0 or height <= 0:
            raise ValueError(f"box {list(box)} of {name!r} in the LLM reply has no area")
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(canvas), x + width), min(float(canvas), y + height)
        if x1 - x0 < 0.5 * width or y1 - y0 < 0.5 * height:
            raise ValueError(f"box {list(box)} of {name!r} in the LLM reply lies mostly outside the "
                             f"{canvas}x{canvas} canvas")
        objects.append(LayoutObject(name.strip(), (x0 / canvas, y0 / canvas, x1 / canvas, y1 / canvas)))
    background = re.search(r"Background prompt\s*:\s*(.*)", text, flags=re.IGNORECASE)
    negative = re.search(r"Negative prompt\s*:\s*(.*)", text, flags=re.IGNORECASE)
    return Layout(background.group(1).strip() if background else "A realistic scene",
                  negative.group(1).strip() if negative else "", objects)


class LayoutClient:
    """Stage 1 of LMD through any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, ...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0, *,
                 temperature: float = 0.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout, self.temperature = model, api_key, timeout, temperature

    def messages(self, prompt: str) -> list[dict]:
        messages = [{"role": "system", "content": INSTRUCTIONS}]
        for caption, answer in EXAMPLES:
            messages += [{"role": "user", "content": f"Caption: {caption}"}, {"role": "assistant", "content": answer}]
        return messages + [{"role": "user", "content": f"Caption: {prompt}"}]

    def __call__(self, prompt: str) -> Layout:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = post_json(self.url, {"model": self.model, "messages": self.messages(prompt),
                                       "temperature": self.temperature}, headers=headers, timeout=self.timeout)
        try:
            reply = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"LLM endpoint {self.url} answered without choices[0].message.content") from None
        if not isinstance(reply, str):
            raise ValueError(f"LLM endpoint {self.url} answered {type(reply).__name__} as the message content, "
                             "expected text")
        return parse_reply(reply)
