"""``s2s serve``: translators, captioners and language models behind one HTTP server (LitServe).

    s2s serve --ckpt de_en.ckpt [--ckpt de_en_seed2.ckpt] [--ckpt captioner.ckpt] --port 8000

Checkpoints of one kind decode as one ensemble behind that kind's endpoint: ``POST /translate``,
``POST /caption``, ``POST /sample``. ``GET /health`` answers ``ok`` once every model is loaded,
and ``GET /`` is a page to try the models in a browser. Requests that arrive within
``--batch-timeout`` seconds of each other are decoded together, up to ``--max-batch-size``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from importlib import resources

import litserve as ls
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from jsonargparse import Namespace
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse

from s2s.models import Captioner, LanguageModel, Seq2Seq
from s2s.scripts import add_checkpoints_argument, check_members, load_models, script_parser
from s2s.serving.apis import CaptionAPI, ModelAPI, SampleAPI, TranslateAPI
from s2s.serving.requests import Limits

API_OF_MODEL: dict[type, type[ModelAPI]] = {
    Seq2Seq: TranslateAPI,
    Captioner: CaptionAPI,
    LanguageModel: SampleAPI,
}


def parse_args(argv: list[str] | None) -> Namespace:
    p = script_parser("s2s serve", __doc__)
    add_checkpoints_argument(p, "a translator, captioner or language model")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-size", type=int, default=16, help="requests decoded together")
    p.add_argument(
        "--batch-timeout", type=float, default=0.01, help="seconds to wait for a batch to fill"
    )
    p.add_argument("--timeout", type=float, default=60, help="seconds a request may wait")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    for f in fields(Limits):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.max_batch_size < 1 or args.batch_timeout < 0:
        sys.exit("s2s serve: --max-batch-size must be >= 1 and --batch-timeout >= 0")
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    server = build_server(group_checkpoints(args.ckpt), limits, args)
    server.run(
        host=args.host,
        port=args.port,
        generate_client_file=False,
        num_api_servers=1,
        log_level="warning",
    )


def group_checkpoints(paths: list[str]) -> dict[type[ModelAPI], list[str]]:
    """The checkpoints behind each API; exits with one line for a model that cannot be served or
    members of one ensemble that disagree (checked here, before any worker starts)."""
    models = load_models(paths, "cpu", None, "s2s serve")
    groups: dict[type[ModelAPI], list[str]] = {}
    for path, model in zip(paths, models, strict=True):
        api = next((a for cls, a in API_OF_MODEL.items() if isinstance(model, cls)), None)
        if api is None:
            sys.exit(f"s2s serve: {path} holds a {type(model).__name__}, which has no endpoint")
        groups.setdefault(api, []).append(path)
    for group in groups.values():
        check_members(group, [models[paths.index(path)] for path in group], "s2s serve")
    return groups


def build_server(
    groups: dict[type[ModelAPI], list[str]], limits: Limits, args: Namespace
) -> ls.LitServer:
    """A LitServer with one API per kind of model and the try-it page at ``/``."""
    apis = [
        api(paths, limits, args.max_batch_size, args.batch_timeout) for api, paths in groups.items()
    ]
    # The largest body a valid request can have: a base64 image (4/3 of its bytes) with options.
    largest = limits.max_image_bytes * 4 // 3 + 1_000_000
    server = ls.LitServer(
        apis, accelerator=args.accelerator, timeout=args.timeout, max_payload_size=largest
    )
    page = page_html([api.path for api in apis])
    # LitServe answers "/" with plain text; the page replaces it.
    server.app.router.routes[:] = [
        r for r in server.app.router.routes if getattr(r, "path", "") != "/"
    ]
    server.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"])
    server.app.add_exception_handler(RequestValidationError, bad_body)
    server.app.add_exception_handler(HTTPException, http_error)
    return server


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Every other error (404, 405, 413, a body that is not UTF-8, a timeout) as ``{"error"}``,
    like the endpoints' own."""
    error = {"error": str(exc.detail)}
    return JSONResponse(error, status_code=exc.status_code, headers=exc.headers)


async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that is not a JSON object, as a one-line 400 error. FastAPI's own answer echoes
    the body, and fails with a 500 when the body is not UTF-8."""
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        reason = error.get("ctx", {}).get("error", "")
        message = f"the request body is not valid JSON ({reason})" if reason else "not JSON"
    else:
        message = "the request body must be a JSON object, sent as application/json"
    return JSONResponse({"error": message}, status_code=400)


def page_html(endpoints: list[str]) -> str:
    """The page, told which endpoints this server has."""
    page = resources.files("s2s.serving").joinpath("page.html").read_text(encoding="utf-8")
    return page.replace("__ENDPOINTS__", json.dumps(endpoints))
