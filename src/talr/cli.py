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


def _average(args: argparse.Namespace) -> int:
    from talr.averaging import check_alpha, wise_ft, wise_ft_grid

    for alpha in args.alpha:
        check_alpha(alpha)
    if len(args.alpha) == 1:
        out = wise_ft(args.base, args.finetuned, args.alpha[0], args.out, overwrite=args.overwrite)
        print(f"Averaged model: {out}")
    else:
        for out in wise_ft_grid(args.base, args.finetuned, args.alpha, args.out):
            print(f"Averaged model: {out}")
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

    average = verbs.add_parser(
        "average", help="WiSE-FT: (1 - alpha) * base + alpha * fine-tuned, written as a model folder",
        description="Each model is an embedded name, a run directory, a model folder or a hub id; a LoRA run is "
                    "averaged by scaling its adapter. With several --alpha values, OUT/alpha_<alpha>/ per value.")
    average.add_argument("--base", required=True, help="the model before fine-tuning")
    average.add_argument("--finetuned", required=True, help="the fine-tuned run directory or model")
    average.add_argument("--alpha", type=float, nargs="+", required=True,
                         help="weight of the fine-tuned model, in [0, 1]")
    average.add_argument("--out", required=True, help="output model folder (or root folder for several alphas)")
    average.add_argument("--overwrite", action="store_true", help="replace an existing OUT (single alpha)")
    average.set_defaults(func=_average)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from talr.averaging import AveragingError
    from talr.config import ConfigError
    from talr.data.formats import DataFormatError

    try:
        return args.func(args)
    except (ConfigError, DataFormatError, AveragingError, FileNotFoundError, FileExistsError) as err:
        print(f"talr {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
