"""Command line: ``picmetric analyze PATH_OR_URL_OR_DIR... [--json] [--out DIR] [--store]``, ``picmetric ingest
s3://bucket/prefix``, ``picmetric worker``, ``picmetric serve``, ``picmetric dashboard``, the model commands and
maintenance. One module per group of commands; ``main`` reads the settings (the environment, ``.env``) once and
hands them to the command."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from picmetric import __version__
from picmetric.errors import PicMetricError
from picmetric.interfaces.cli import analyze, evaluate, models, servers, stored, video
from picmetric.interfaces.cli.common import UsageError
from picmetric.settings import get_settings

COMMAND_GROUPS = (analyze, models, stored, evaluate, video, servers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picmetric", description="What three neural networks see in a photo.")
    parser.add_argument("--version", action="version", version=f"picmetric {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "dashboard":
        args.streamlit_args = unknown  # e.g. --server.headless true: Streamlit's own flags
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args, get_settings())
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 2
    except PicMetricError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # settings from the environment, .env or secrets
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"picmetric: configuration: {where}: {error['msg']}", file=sys.stderr)
        return 2
    except ArgumentError:
        print("picmetric: configuration: the database URL cannot be parsed (DATABASE_URL)", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"picmetric: the database could not be reached ({exc.__class__.__name__})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
