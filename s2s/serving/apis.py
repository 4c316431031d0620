"""The LitServe APIs of ``s2s serve``: one per kind of model, each decoding with the shared search.

LitServe runs each API in its own worker process: ``setup`` loads the checkpoints there, and
requests that arrive within ``batch_timeout`` of each other reach ``predict`` together. A bad
request must not fail the others of its batch, so ``decode_request`` never raises: it returns the
:class:`BadRequest`, ``predict`` passes it through, and ``encode_response`` turns it into that
request's own 400 answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import litserve as ls
import torch
from starlette.responses import JSONResponse

from s2s.checkpoint import load_model
from s2s.data.captions import image_batch
from s2s.data.text_stream import make_prompts
from s2s.data.translation import LINES_MAX_LEN, LINES_MAX_TOKENS, in_input_order
from s2s.decoding import Hypothesis, beam_search, decode, sample
from s2s.decoding.ensemble import Ensemble
from s2s.serving.requests import (
    BadRequest,
    CaptionJob,
    Limits,
    SampleJob,
    TranslateJob,
    parse_caption,
    parse_sample,
    parse_translate,
)
from s2s.tokenizer import EOS_ID, Tokenizer

J = TypeVar("J")
Parsed = Any  # a job of the API's kind, or the BadRequest that refused it


class ModelAPI(ls.LitAPI):
    """Loads ``checkpoints`` (several decode as one :class:`Ensemble`) and answers JSON requests.

    Subclasses set ``path`` and implement ``parse`` and ``run``.
    """

    path = "/predict"

    def __init__(
        self,
        checkpoints: Sequence[str],
        limits: Limits,
        max_batch_size: int = 16,
        batch_timeout: float = 0.01,
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=self.path
        )
        self.checkpoints, self.limits = list(checkpoints), limits

    def setup(self, device: str) -> None:
        self.models = [load_model(path, map_location=device) for path in self.checkpoints]
        self.model = self.models[0]  # its tokenizers and search settings serve the ensemble
        self.decoder = self.model if len(self.models) == 1 else Ensemble(self.models)
        self.device = device

    def decode_request(self, request: dict) -> Parsed:
        try:
            return self.parse(request)
        except BadRequest as e:
            return e

    def batch(self, inputs: list[Parsed]) -> list[Parsed]:
        return inputs

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    @torch.inference_mode()
    def predict(self, x: Parsed | list[Parsed]) -> Any:
        # LitServe passes a list only when it batches (max_batch_size > 1).
        if self.max_batch_size == 1:
            return self.predict_batch([x])[0]
        return self.predict_batch(x)

    def predict_batch(self, inputs: list[Parsed]) -> list[Any]:
        outputs: list[Any] = list(inputs)  # refused requests stay as they are
        jobs = [(i, job) for i, job in enumerate(inputs) if not isinstance(job, BadRequest)]
        if jobs:
            for i, answer in zip([i for i, _ in jobs], self.run([j for _, j in jobs]), strict=True):
                outputs[i] = answer
        return outputs

    def encode_response(self, output: Any) -> Any:
        if isinstance(output, BadRequest):
            return JSONResponse({"error": str(output)}, status_code=400)
        return output

    def parse(self, request: dict) -> Any:
        raise NotImplementedError

    def run(self, jobs: list[Any]) -> list[dict[str, Any]]:
        """One answer per job, in order."""
        raise NotImplementedError


class TranslateAPI(ModelAPI):
    """``POST /translate``: ``{"text": [...]}`` -> ``{"translations": [[n-best], ...]}``."""

    path = "/translate"

    def parse(self, request: dict) -> TranslateJob:
        return parse_translate(request, self.model.search, self.limits)

    def run(self, jobs: list[TranslateJob]) -> list[dict[str, Any]]:
        # The sentences of every job with the same options form one stream of batches.
        nbests: dict[int, list[list[Hypothesis]]] = {}
        for group in by_options(jobs, lambda job: job.search):
            lines = [s for i in group for s in jobs[i].sentences]
            results = self.translate(lines, jobs[group[0]].search)
            for i in group:
                n = len(jobs[i].sentences)
                nbests[i], results = results[:n], results[n:]
        tok = self.model.tokenizers["tgt"]
        return [
            {"translations": [[hypothesis(tok, h) for h in nbest] for nbest in nbests[i]]}
            for i in range(len(jobs))
        ]

    def translate(self, lines: list[str], search: Any) -> list[list[Hypothesis]]:
        """Each line's n-best, as ``s2s-translate`` decodes it (an empty line gets empty text)."""
        results: list[list[Hypothesis]] = [[] for _ in lines]
        runs = in_input_order(
            lines,
            self.model.tokenizers["src"],
            lambda batch: decode(self.decoder, batch, search),
            max_tokens=LINES_MAX_TOKENS,
            max_len=LINES_MAX_LEN,
            device=self.device,
        )
        for done in runs:
            for i, nbest in done:
                if not lines[i].strip():  # empty text, whatever the model makes of it
                    nbest = [Hypothesis([], h.score, h.normalized_score) for h in nbest]
                results[i] = nbest
        return results


class CaptionAPI(ModelAPI):
    """``POST /caption``: ``{"image": base64}`` -> ``{"captions": [n-best], "attention"?}``."""

    path = "/caption"

    def parse(self, request: dict) -> CaptionJob:
        return parse_caption(request, self.model.search, self.limits)

    def run(self, jobs: list[CaptionJob]) -> list[dict[str, Any]]:
        prep, tok = self.model.preprocessing, self.model.tokenizers["tgt"]
        transform = prep.transform()
        answers: dict[int, dict[str, Any]] = {}
        for group in by_options(jobs, lambda job: job.search):
            batch = image_batch([jobs[i].image for i in group], transform)
            batch.images = batch.images.to(self.device, self.model.dtype)
            nbests = beam_search(self.decoder, batch, jobs[group[0]].search)
            for i, nbest in zip(group, nbests, strict=True):
                answers[i] = {"captions": [hypothesis(tok, h) for h in nbest]}
                if jobs[i].attention:
                    answers[i]["attention"] = self.attention(nbest[0])
        return [answers[i] for i in range(len(jobs))]

    def attention(self, hyp: Hypothesis) -> dict[str, Any] | None:
        """Each word's weights over the encoder's grid of regions (the last row: EOS)."""
        if hyp.attention is None:
            return None
        size = self.model.preprocessing.crop_size
        tok = self.model.tokenizers["tgt"]
        return {
            "words": [p.lstrip("▁") for p in tok.pieces([*hyp.tokens, EOS_ID])],
            "grid": list(self.model.encoder.grid_shape(size, size)),
            "weights": [[round(w, 5) for w in row] for row in hyp.attention.float().tolist()],
        }


class SampleAPI(ModelAPI):
    """``POST /sample``: ``{"prompt": ...}`` -> ``{"samples": [prompt + continuation, ...]}``."""

    path = "/sample"

    def parse(self, request: dict) -> SampleJob:
        return parse_sample(request, self.limits)

    def run(self, jobs: list[SampleJob]) -> list[dict[str, Any]]:
        # Each job alone: its samples depend on its seed only, not on the requests beside it.
        tok = self.model.tokenizers["tgt"]
        answers = []
        for job in jobs:
            prompts = make_prompts([job.prompt], tok)
            prompts.ids, prompts.lengths = (
                prompts.ids.to(self.device),
                prompts.lengths.to(self.device),
            )
            prefix = tok.encode(job.prompt)
            hyps = sample(self.decoder, prompts, job.sampling)
            answers.append({"samples": [tok.decode(prefix + h.tokens) for h in hyps]})
        return answers


def by_options(jobs: list[J], options: Callable[[J], Any]) -> list[list[int]]:
    """The positions of ``jobs``, grouped by equal options, each group in order."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[options(job)].append(i)
    return list(groups.values())


def hypothesis(tok: Tokenizer, hyp: Hypothesis) -> dict[str, Any]:
    """A hypothesis as JSON: its text, total log-probability and ranking score."""
    return {
        "text": tok.decode(hyp.tokens),
        "score": hyp.score,
        "normalized_score": hyp.normalized_score,
    }
