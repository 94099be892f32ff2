"""The web service: a REST API and a browser page over digitlab's models (`digitlab serve`).

    digitlab serve                       # http://127.0.0.1:8000: the page, /v1/predict, /v1/read, /docs
    from digitlab.serve import create_app, ServeConfig
    app = create_app(ServeConfig(models={"mnist": None, "tibetan": "runs/tibetan"}))   # any ASGI server

Needs the `serve` extra: pip install -e '.[serve]' (FastAPI, uvicorn, python-multipart).
"""

from digitlab.serve.config import ServeConfig


def create_app(config: ServeConfig | None = None):
    """The FastAPI app (digitlab.serve.app.create_app), imported when first asked for."""
    from digitlab.serve.app import create_app as make

    return make(config)


__all__ = ["ServeConfig", "create_app"]
