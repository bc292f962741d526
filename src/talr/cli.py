"""The ``talr`` command: one entry point, one sub-command per verb."""

from __future__ import annotations

import argparse
import logging
import sys


def _train(args: argparse.Namespace) -> int:
    from talr.config import load_config

    config = load_config(args.config, args.set)  # fails on a bad key before any model loads
    from talr.trainer import train

    run_dir = train(config, resume=args.resume)
    print(f"Run finished: {run_dir}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from talr.analysis import analyze, format_analysis

    summary = analyze(args.model, args.data, compare=args.compare, out=args.out, max_length=args.max_length,
                      batch_size=args.batch_size, limit=args.limit, seed=args.seed, log_scale=args.log_scale,
                      top=args.top)
    print(format_analysis(summary))
    return 0


def _codelength(args: argparse.Namespace) -> int:
    import json

    from talr.analysis import codelength, format_codelength

    if len(args.model) != 2:
        print("talr codelength: error: give exactly two models, --model A --model B (Delta L = L_B - L_A)",
              file=sys.stderr)
        return 2
    general = None if args.general == "none" else args.general
    result = codelength(args.model[0], args.model[1], args.data, general, max_length=args.max_length,
                        batch_size=args.batch_size, limit=args.limit, seed=args.seed)
    print(format_codelength(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


def _advise(args: argparse.Namespace) -> int:
    import json

    from talr.advisor import advise, format_advice, save_advice
    from talr.data.chat import dataset_spec
    from talr.config import load_config

    # the probe runs train on slices of --data, whatever data.train the config names
    train_data = json.dumps(dataset_spec(args.data))
    config = load_config(args.config, [f"model={args.model}", f"data.train={train_data}", *args.set])
    general = None if args.general == "none" else args.general
    learning_rates = [float(x) for x in args.learning_rates.split(",")]
    advice = advise(config, args.data, general=general, learning_rates=learning_rates, steps=args.steps,
                    train_size=args.train_size, probe_size=args.probe_size, methods=args.methods.split(","))
    print(format_advice(advice))
    if args.out:
        save_advice(advice, args.out)
    return 0


def _add_scoring_options(parser: argparse.ArgumentParser, limit: int | None) -> None:
    parser.add_argument("--max-length", type=int, default=512, help="tokens per example, as in training (default 512)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=limit, help="score a seeded sample of this many examples")
    parser.add_argument("--seed", type=int, default=0)


def _sweep(args: argparse.Namespace) -> int:
    from talr.sweep import load_sweep_config, run_sweep

    # every config error surfaces before training starts; a plan does not load the model (it runs elsewhere)
    sweep = load_sweep_config(args.config, args.set, check_model=not args.plan)
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
    if args.record:
        from talr.sweep_record import make_record

        print(f"Record: {make_record(args.sweep_dir, args.record).parent}")
        return 0
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
    train.add_argument("--resume", action="store_true",
                       help="continue from the run directory's last checkpoint (from step 0 when it has none)")
    train.set_defaults(func=_train)

    data_help = "a JSONL file of chat examples, an Alpaca JSON file, `alpaca`, or a data source NAME[:SPLIT[:FORMAT]]"
    analyze = verbs.add_parser("analyze", help="probability of every supervised token: hard tokens, histogram")
    analyze.add_argument("--model", required=True, help="model spec (embedded name, run dir, folder, hub id)")
    analyze.add_argument("--data", required=True, help=data_help)
    analyze.add_argument("--compare", help="a second model: which tokens' probabilities changed most")
    analyze.add_argument("--out", help="output folder (default analysis_<data name>)")
    analyze.add_argument("--log-scale", action="store_true", help="histogram over log-spaced probability bins")
    analyze.add_argument("--top", type=int, default=20, help="how many hardest / most changed tokens to list")
    _add_scoring_options(analyze, limit=None)
    analyze.set_defaults(func=_analyze)

    code = verbs.add_parser("codelength", help="code length of general and domain responses under two models; Delta L")
    code.add_argument("--model", action="append", required=True, help="give twice: A (q1, e.g. base) then B (q2)")
    code.add_argument("--data", required=True, help="the domain set P2: " + data_help)
    code.add_argument("--general", default="alpaca", help="the general set P1 (default: alpaca; `none` to skip)")
    code.add_argument("--out", help="also write the result as JSON here")
    _add_scoring_options(code, limit=200)
    code.set_defaults(func=_codelength)

    advise = verbs.add_parser("advise", help="before training: hard-token statistics and a learning-rate probe")
    advise.add_argument("--model", required=True)
    advise.add_argument("--data", required=True, help="the domain training data: " + data_help)
    advise.add_argument("--config", "-c", help="a training config whose settings the probe runs use")
    advise.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    advise.add_argument("--general", default="alpaca", help="general probe set P1 (default: alpaca)")
    advise.add_argument("--learning-rates", default="1e-6,5e-6,2e-5", help="candidates, comma-separated")
    advise.add_argument("--methods", default="sft,talr", help="loss weightings to probe, comma-separated")
    advise.add_argument("--steps", type=int, default=16, help="optimizer steps per probe run")
    advise.add_argument("--train-size", type=int, default=128, help="training examples the probe runs see")
    advise.add_argument("--probe-size", type=int, default=48, help="examples in each code-length probe set")
    advise.add_argument("--out", help="also write the evidence as JSON here")
    advise.set_defaults(func=_advise)

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
    report.add_argument("--record", metavar="DIR", help="also bundle the sweep into a record folder DIR to commit "
                        "(sweep.yaml, results.json, samples.jsonl.gz, figures) with its report")
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
    from talr.checkpoints import ResumeError
    from talr.config import ConfigError
    from talr.data.formats import DataFormatError
    from talr.divergence import TrainingDiverged
    from talr.locks import FolderLockedError

    try:
        return args.func(args)
    except TrainingDiverged as err:  # run.json says so; distinct exit status for scripts
        print(f"talr {args.verb}: error: {err}", file=sys.stderr)
        return 3
    except (ConfigError, DataFormatError, AveragingError, ResumeError, FolderLockedError, FileNotFoundError,
            FileExistsError) as err:
        print(f"talr {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
