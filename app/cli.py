"""`personid serve`: run the service under uvicorn; every `Settings` field is also an option.

Options are generated from `Settings.model_fields`, so a new setting is a new option with no edit here.
Given options are passed to the app as `PERSONID_*` environment variables: that is how each uvicorn worker
process, which builds its own app through the factory, sees the same configuration. Never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Any
from unittest import mock

from pydantic import SecretStr, ValidationError

from app.settings import Settings

log = logging.getLogger("personid")
ENV_PREFIX = "PERSONID_"
# An idle keep-alive connection is closed after this long (uvicorn's default, set here so that it is a decision).
KEEP_ALIVE_S = 5


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(_is_list(arg) for arg in typing.get_args(annotation))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personid serve",
        description="Run the personid HTTP service. Options override PERSONID_* environment variables.",
    )
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = info.get_default(call_default_factory=True)
        help_ = f"{info.description or ''} [env {ENV_PREFIX}{name.upper()}; default {default!r}]"
        if info.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(info.annotation) is typing.Literal:
            parser.add_argument(flag, dest=name, default=None, choices=typing.get_args(info.annotation), help=help_)
        elif _is_list(info.annotation):
            parser.add_argument(flag, dest=name, default=None, metavar="A,B,...", help=help_ + " (comma-separated)")
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_)
    return parser


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(_env_value(item) for item in value)
    return str(value)


def settings_from_args(argv: list[str]) -> tuple[Settings, dict[str, str]]:
    """Parse options, validate them with the environment; returns the settings and the env vars to export."""
    args = build_parser().parse_args(argv)
    given = {name: value for name, value in vars(args).items() if value is not None}
    env = {ENV_PREFIX + name.upper(): _env_value(value) for name, value in given.items()}
    with mock.patch.dict(os.environ, env):
        settings = Settings()
    return settings, env


def main(argv: list[str]) -> int:
    try:
        settings, env = settings_from_args(argv)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"personid serve: --{field.replace('_', '-')}: {error['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers > 1 and not settings.qdrant_url:
        print(
            f"personid serve: --workers {settings.workers}: the embedded gallery ({settings.qdrant_path}) has one "
            "writer per folder, so it serves from one process; run a Qdrant server and pass --qdrant-url to use "
            "several workers",
            file=sys.stderr,
        )
        return 2
    if not settings.qdrant_url:
        log.info("embedded Qdrant at %s: one worker process", Path(settings.qdrant_path).resolve())
    os.environ.update(env)

    import uvicorn  # here, so that `personid serve --help` answers without loading the server

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        limit_concurrency=settings.max_connections,  # per worker: more connections get 503 at once
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0
