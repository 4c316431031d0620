"""What a client may ask of ``s2s serve``: each endpoint's JSON body read into decoding options.

Every check names the field it refuses, so that a client gets a one-line 400 error instead of a
failed batch. Requests are read in the inference worker, beside the model whose search settings
they override.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from s2s.data.images import to_rgb
from s2s.decoding import SamplingConfig, SearchConfig


class BadRequest(ValueError):
    """A request the server refuses; the message names the field."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the defaults keep one request under a few CPU seconds."""

    max_sentences: int = 64  # sentences per /translate request
    max_chars: int = 2000  # characters per sentence or prompt
    max_beam: int = 16  # beam size, and n-best or samples per input
    max_len: int = 256  # output length in subwords
    max_image_bytes: int = 10_000_000  # size of a decoded /caption image file
    max_image_pixels: int = 40_000_000  # width x height of a /caption image


@dataclass(frozen=True)
class TranslateJob:
    sentences: list[str]
    search: SearchConfig


@dataclass(frozen=True)
class CaptionJob:
    image: Image.Image
    search: SearchConfig
    attention: bool


@dataclass(frozen=True)
class SampleJob:
    prompt: str
    sampling: SamplingConfig


def parse_translate(body: Any, search: SearchConfig, limits: Limits) -> TranslateJob:
    """``{"text": [sentences], "beam", "n_best", "length_penalty", "max_len"}``; options may be
    left out (the model's recipe then decides)."""
    fields = _object(body, {"text", "beam", "n_best", "length_penalty", "max_len"})
    sentences = fields.get("text")
    if not isinstance(sentences, list) or not sentences:
        raise BadRequest('"text" must be a non-empty list of sentences')
    if len(sentences) > limits.max_sentences:
        raise BadRequest(f'"text" has {len(sentences)} sentences; at most {limits.max_sentences}')
    for i, sentence in enumerate(sentences):
        _text(sentence, f'"text"[{i}]', limits)
    return TranslateJob(sentences, _search(fields, search, limits))


def parse_caption(body: Any, search: SearchConfig, limits: Limits) -> CaptionJob:
    """``{"image": base64 or data URL, "beam", "n_best", "max_len", "attention": bool}``."""
    fields = _object(body, {"image", "beam", "n_best", "max_len", "attention"})
    attention = fields.get("attention", False)
    if not isinstance(attention, bool):
        raise BadRequest('"attention" must be true or false')
    image = _image(fields.get("image"), limits)
    return CaptionJob(image, _search(fields, search, limits), attention)


def parse_sample(body: Any, limits: Limits) -> SampleJob:
    """``{"prompt", "num_samples", "max_len", "temperature", "top_k", "top_p", "seed"}``."""
    keys = {"prompt", "num_samples", "max_len", "temperature", "top_k", "top_p", "seed"}
    fields = _object(body, keys)
    prompt = _text(fields.get("prompt", ""), '"prompt"', limits)
    options = {
        "num_samples": _int(fields, "num_samples", 1, 1, limits.max_beam),
        "max_len_b": _int(fields, "max_len", 100, 1, limits.max_len),
        "temperature": _float(fields, "temperature", 1.0, 1e-3, 100.0),
        "top_k": _int(fields, "top_k", 0, 0, 1_000_000),
        "top_p": _float(fields, "top_p", 1.0, 1e-6, 1.0),
        "seed": _int(fields, "seed", 0, 0, 2**63 - 1),
    }
    return SampleJob(prompt, SamplingConfig(**options))


def _object(body: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if unknown := sorted(set(body) - keys):
        raise BadRequest(f'unknown field "{unknown[0]}"; expected some of {sorted(keys)}')
    return body


def _text(value: Any, name: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > limits.max_chars:
        raise BadRequest(f"{name} has {len(value)} characters; at most {limits.max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{name} is not valid Unicode (a lone surrogate)") from None
    return value


def _search(fields: dict[str, Any], search: SearchConfig, limits: Limits) -> SearchConfig:
    """The model's search settings with the request's beam, n-best, length penalty and max_len."""
    beam = _int(fields, "beam", min(search.beam_size, limits.max_beam), 1, limits.max_beam)
    n_best = _int(fields, "n_best", 1, 1, beam)
    overrides: dict[str, Any] = {"beam_size": beam, "n_best": n_best}
    if "length_penalty" in fields:
        overrides["length_penalty"] = _float(fields, "length_penalty", 0.0, 0.0, 10.0)
    if "max_len" in fields:
        overrides.update(max_len_a=0.0, max_len_b=_int(fields, "max_len", 0, 1, limits.max_len))
    elif search.max_len_a == 0:
        overrides["max_len_b"] = min(search.max_len_b, limits.max_len)
    config = replace(search, **overrides)
    return replace(config, min_len=min(config.min_len, config.max_len_b))


def _int(fields: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f'"{name}" must be an integer in [{low}, {high}], got {value!r}')
    return value


def _float(fields: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f'"{name}" must be a number in [{low}, {high}], got {value!r}')
    return float(value)


def _image(value: Any, limits: Limits) -> Image.Image:
    """The RGB image of a base64 string (a ``data:image/...;base64,`` prefix is allowed)."""
    if not isinstance(value, str) or not value:
        raise BadRequest('"image" must be a base64-encoded image file')
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) * 3 // 4 > limits.max_image_bytes:
        raise BadRequest(f'"image" is larger than {limits.max_image_bytes} bytes')
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest('"image" is not valid base64') from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > limits.max_image_pixels:
                raise BadRequest(f'"image" has more than {limits.max_image_pixels} pixels')
            img.load()
            return to_rgb(img)
    except BadRequest:
        raise
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise BadRequest(f'"image" cannot be decoded ({type(e).__name__}: {e})') from None
