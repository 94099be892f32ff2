"""The `digitlab serve` command, added to digitlab's parser by ``add_commands``; FastAPI and uvicorn load
only when it runs."""

from __future__ import annotations

import argparse
import os
import sys

from digitlab.errors import ConfigError, DigitlabError
from digitlab.serve.config import API_KEYS_ENV, CONFIG_ENV, ServeConfig, env_keys


def add_commands(command) -> None:
    p = command("serve", "serve the REST API and the browser page (FastAPI on uvicorn)", cmd_serve,
                description="Serve /v1/predict (one digit), /v1/read (digit strings), /v1/models, /healthz, "
                            "the OpenAPI docs at /docs and a page to draw or drop digits at /. Each worker loads "
                            "the models once; models run on ONNX Runtime when it is installed.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument("--model", action="append", default=[], metavar="SCRIPT=RUN",
                   help="serve this checkpoint (run folder, .safetensors or .onnx) under this script name; "
                        "repeatable (default: every bundled model)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help=f"require this key (X-API-Key header or Bearer token) on /v1/; repeatable. Prefer "
                        f"${API_KEYS_ENV} (comma-separated): a command line is visible to other users")
    p.add_argument("--max-bytes", type=int, default=ServeConfig.max_bytes, metavar="N",
                   help=f"largest request body (default {ServeConfig.max_bytes:,})")
    p.add_argument("--max-pixels", type=int, default=ServeConfig.max_pixels, metavar="N",
                   help=f"largest image, checked before decoding (default {ServeConfig.max_pixels:,})")
    p.add_argument("--timeout", type=float, default=ServeConfig.timeout, metavar="S",
                   help=f"seconds a request may compute before it gets 504 (default {ServeConfig.timeout:g})")
    p.add_argument("--backend", choices=["onnxruntime", "torch"],
                   help="the classifiers' engine (default: ONNX Runtime when installed, else PyTorch)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info; request lines never hold the API key)")


def serve_config(args: argparse.Namespace) -> ServeConfig:
    models = {}
    for item in args.model:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            raise ConfigError(f"--model takes SCRIPT=RUN, e.g. tibetan=runs/tibetan; got {item!r}")
        models[name] = source
    if args.workers < 1 or not 0 < args.port < 65536:
        raise ConfigError(f"--workers must be >= 1 and --port in 1..65535, got {args.workers} and {args.port}")
    return ServeConfig(models=models, max_bytes=args.max_bytes, max_pixels=args.max_pixels, timeout=args.timeout,
                       api_keys=tuple(args.api_key) + env_keys(), backend=args.backend, tune_process=True)


def cmd_serve(args: argparse.Namespace) -> None:
    config = serve_config(args)
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401 - python-multipart, which FastAPI's forms need
        import uvicorn
    except ImportError:
        raise DigitlabError("digitlab serve needs FastAPI, uvicorn and python-multipart: "
                            "pip install -e '.[serve]'") from None
    from digitlab.serve.app import create_app, load_scripts

    scripts = load_scripts(config)  # fails here, in one line, before any worker starts
    print(f"digitlab: serving {', '.join(scripts)} on http://{args.host}:{args.port} (page /, API /v1/, docs /docs"
          f"{', API key required' if config.api_keys else ''})", file=sys.stderr, flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
        return
    os.environ[CONFIG_ENV] = config.to_env()  # each worker builds its app from it (app_from_env)
    uvicorn.run("digitlab.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
