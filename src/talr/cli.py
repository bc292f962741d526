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


def _sweep(args: argparse.Namespace) -> int:
    from talr.sweep import load_sweep_config, run_sweep

    sweep = load_sweep_config(args.config, args.set)  # every config error surfaces before training starts
    if args.plan:
        from talr.sweep import plan_sweep

        print("\n".join(plan_sweep(sweep)))
        return 0
    root = run_sweep(sweep)
    if not args.no_report:
        from talr.report import write_report

        print(f"Report: {write_report(root)}")
    print(f"Sweep finished: {root}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from talr.report import write_report

    print(f"Report: {write_report(args.sweep_dir)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from talr.demo import run_demo

    report = run_demo(args.out, args.data_dir)
    print(f"Demo finished. Report: {report}")
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

    sweep = verbs.add_parser("sweep", help="train and evaluate a grid of methods x learning rates x seeds (resumable)")
    sweep.add_argument("config", help="sweep YAML (see configs/sweeps/)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a sweep value")
    sweep.add_argument("--no-report", action="store_true", help="skip writing report.md at the end")
    sweep.add_argument("--plan", action="store_true",
                       help="write each unfinished point's config.yaml and print one `accelerate launch` command each")
    sweep.set_defaults(func=_sweep)

    from talr.evaluation import cli as eval_cli

    evaluate = verbs.add_parser("eval", help="evaluate a model on domain and general tasks (lm-eval-shaped results)")
    eval_cli.add_arguments(evaluate)
    evaluate.set_defaults(func=eval_cli.run)

    demo = verbs.add_parser("demo", help="a small end-to-end sweep on the embedded model, with its report")
    demo.add_argument("--out", default="demo", help="where the demo's sweep and report go (default: ./demo)")
    demo.add_argument("--data-dir", help="use the real sets from a folder laid out like ../shared/data")
    demo.set_defaults(func=_demo)

    report = verbs.add_parser("report", help="write report.md and plots for a sweep directory")
    report.add_argument("sweep_dir")
    report.set_defaults(func=_report)

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
