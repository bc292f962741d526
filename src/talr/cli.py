"""The ``talr`` command: one entry point, one sub-command per verb."""

from __future__ import annotations

import argparse
import logging
import sys


def _train(args: argparse.Namespace) -> int:
    from talr.config import load_config

    config = load_config(args.config, args.set)  # fails on a bad key before any model loads
    from talr.trainer import train

    run_dir = train(config)
    print(f"Run finished: {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talr", description="Domain SFT that keeps general capabilities (TALR, small learning rates, baselines)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    train = verbs.add_parser("train", help="fine-tune a model from a YAML config")
    train.add_argument("--config", "-c", help="YAML config (see configs/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.learning_rate=1e-6 (repeatable)")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from talr.config import ConfigError
    from talr.data.formats import DataFormatError

    try:
        return args.func(args)
    except (ConfigError, DataFormatError, FileNotFoundError) as err:
        print(f"talr {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
