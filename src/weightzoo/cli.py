"""Command line: `weightzoo <command>` (also `python3 cli.py <command>` from the repository root).

Commands and flags follow the seed's: create-sig-dataset, run-data-gen, create-benchmark-dataset,
each driven by one YAML config. A user mistake (bad config, missing file, bad flag) prints one clear
message and exits with status 2, never a traceback. Heavy imports (torch) stay out of commands that
don't need them.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from weightzoo import __version__
from weightzoo.errors import UserError, shorten

EXIT_USER_ERROR = 2


def _int_between(minimum: int, maximum: int):
    """An argparse type: an integer in minimum..maximum."""

    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= 40 else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"{shorten(repr(text))} is not an integer")
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed {minimum}..{maximum})")
        return value

    return parse


MAX_SEQUENCES = 100_000  # of a signature or benchmark file (every subject model reads the signature set)
_count = _int_between(1, MAX_SEQUENCES)
_seed = _int_between(0, 2**64 - 1)


def _pattern_list(text: str) -> tuple[str, ...]:
    from weightzoo.data.patterns import PATTERN_NAMES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("no pattern named")
    for name in names:
        if name not in PATTERN_NAMES:
            close = difflib.get_close_matches(name, PATTERN_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(PATTERN_NAMES)}"
            raise argparse.ArgumentTypeError(f"unknown pattern '{name}'{hint}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a pattern is named twice")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weightzoo",
        description="Generate datasets of trained subject models for training LLM interpreters.",
    )
    parser.add_argument("--version", action="version", version=f"weightzoo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sig = commands.add_parser("create-sig-dataset", help="write the signature (probe) dataset file")
    sig.add_argument("--config-path", required=True, type=Path, help="YAML config")
    sig.add_argument(
        "--filename", type=Path, help="where to write it (default: the config's signature.dataset_path)"
    )
    sig.add_argument("--size", type=_count, default=200, help="number of sequences (default 200)")
    sig.add_argument("--seed", type=_seed, help="random seed (default: the config's pipeline.random_seed)")
    sig.set_defaults(handler=create_sig_dataset)

    gen = commands.add_parser("run-data-gen", help="generate the interpreter training dataset")
    gen.add_argument("--config-path", required=True, type=Path, help="YAML config")
    gen.add_argument(
        "--keep-tensorboard",
        action="store_true",
        help="with metrics.tensorboard.auto_launch: leave TensorBoard serving after generation ends",
    )
    gen.add_argument(
        "--ray-address",
        help="run on the Ray cluster at this address (sets pipeline.backend to ray; 'auto': the local one)",
    )
    gen.add_argument(
        "--repair",
        action="store_true",
        help="regenerate exactly the cohorts whose shards are damaged (byte-identical to the originals)",
    )
    gen.set_defaults(handler=run_data_gen)

    bench = commands.add_parser(
        "create-benchmark-dataset",
        help="write labelled sequences per pattern, disjoint from the signature set",
    )
    bench.add_argument("--config-path", required=True, type=Path, help="YAML config")
    bench.add_argument("--samples-per-pattern", required=True, type=_count, help="sequences per pattern")
    bench.add_argument(
        "--patterns", type=_pattern_list, help="comma-separated pattern names (default: the enabled patterns)"
    )
    bench.add_argument(
        "--filename",
        type=Path,
        help="where to write it (default: <pipeline.output_dir>/benchmark_dataset.json)",
    )
    bench.add_argument("--seed", type=_seed, help="random seed (default: the config's pipeline.random_seed)")
    bench.set_defaults(handler=create_benchmark_dataset)

    ren = commands.add_parser(
        "render", help="write a dataset's prompts again with other format options, without retraining"
    )
    ren.add_argument("folder", type=Path, help="a finished run-data-gen output folder")
    ren.add_argument("--to", required=True, type=Path, help="the new folder (new or empty)")
    ren.add_argument("--style", choices=("separate", "interwoven"), help="signature.prompt_format.style")
    ren.add_argument("--decimals", type=_count, help="signature.prompt_format.decimals")
    ren.add_argument("--numbers", choices=("decimal", "grid"), help="signature.prompt_format.numbers")
    ren.add_argument(
        "--compact-numbers",
        action=argparse.BooleanOptionalAction,
        help="signature.prompt_format.compact_numbers",
    )
    ren.set_defaults(handler=render)

    ev = commands.add_parser("evaluate", help="score an interpreter's completions against a dataset")
    ev.add_argument("folder", type=Path, help="the dataset (a run-data-gen output folder)")
    ev.add_argument(
        "--completions", required=True, type=Path, help="JSONL or Parquet of example_id and completion"
    )
    ev.add_argument("--task", required=True, choices=("classification", "modification"))
    ev.add_argument(
        "--report",
        type=Path,
        help="where the report goes, as PATH.json and PATH.md (default: beside the completions)",
    )
    ev.add_argument("--fresh", type=_count, default=500, help="fresh sequences per pattern (default 500)")
    ev.add_argument(
        "--benchmark",
        type=Path,
        help="score repairs on this benchmark file's sequences instead of fresh ones",
    )
    ev.add_argument("--split", help="score only this split of a `weightzoo split` folder (e.g. test)")
    ev.set_defaults(handler=evaluate)

    ht = commands.add_parser("harness-task", help="write an lm-evaluation-harness task for a dataset")
    ht.add_argument("folder", type=Path, help="the dataset (a run-data-gen output folder)")
    ht.add_argument("--to", required=True, type=Path, help="the folder for the task files")
    ht.set_defaults(handler=harness_task)

    ins = commands.add_parser("inspect", help="write a self-contained HTML report of what a dataset holds")
    ins.add_argument("folder", type=Path, help="the dataset (a run-data-gen output folder)")
    ins.add_argument("--to", type=Path, help="where the page goes (default: FOLDER/report.html)")
    ins.set_defaults(handler=inspect)

    spl = commands.add_parser("split", help="write a dataset as train, validation and test splits")
    spl.add_argument("folder", type=Path, help="a finished run-data-gen output folder")
    spl.add_argument("--to", required=True, type=Path, help="the new folder (new or empty)")
    spl.add_argument("--validation", type=float, default=0.05, help="share of rows (default 0.05)")
    spl.add_argument("--test", type=float, default=0.05, help="share of rows (default 0.05)")
    spl.add_argument(
        "--hold-out-combinations",
        type=float,
        default=0.0,
        help="share of the selected-pattern combinations whose rows all go to test (default 0)",
    )
    spl.add_argument("--seed", type=_seed, default=0, help="the split's own seed (default 0)")
    spl.set_defaults(handler=split)
    return parser


def create_sig_dataset(args) -> int:
    from weightzoo.config import load_config
    from weightzoo.data.probe_sets import file_kind, make_signature_set
    from weightzoo.output.files import write_json_atomic
    from weightzoo.output.store import prepare_target

    cfg = load_config(args.config_path)
    seed = cfg.pipeline.random_seed if args.seed is None else args.seed
    target = args.filename if args.filename is not None else cfg.signature.dataset_path
    if file_kind(target) == "benchmark":
        raise UserError(f"--filename: {target} is a benchmark file; a signature file goes elsewhere")
    prepare_target(target, cfg.pipeline.output_dir, "signature")
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    doc = make_signature_set(cfg.space, enabled, args.size, seed)
    write_json_atomic(target, doc)
    counts = _group_counts(doc)
    print(
        f"wrote {len(doc['examples'])} signature sequences to {target} "
        f"(seed {seed}, sha256 {doc['content_hash'][:16]})"
    )
    print("  per group: " + ", ".join(f"{g} {n}" for g, n in counts.items()))
    if len(doc["examples"]) < args.size:
        print(
            f"  note: only {len(doc['examples'])} distinct sequences were available "
            f"of the {args.size} asked for"
        )
    return 0


def create_benchmark_dataset(args) -> int:
    from weightzoo.config import load_config
    from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
    from weightzoo.data.probe_sets import file_kind, make_benchmark_set, read_probe_file
    from weightzoo.output.files import write_json_atomic
    from weightzoo.output.store import BENCHMARK, prepare_target

    cfg = load_config(args.config_path)
    seed = cfg.pipeline.random_seed if args.seed is None else args.seed
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    patterns = args.patterns if args.patterns is not None else enabled
    for name in patterns:
        if PATTERNS[name].count(cfg.space) == 0:
            raise UserError(
                f"--patterns: '{name}' has no members at vocab_size {cfg.space.vocab_size}, "
                f"sequence_length {cfg.space.length}"
            )
    labelled = tuple(n for n in PATTERN_NAMES if n in enabled or n in patterns)
    signature = read_probe_file(cfg.signature.dataset_path, cfg.space, enabled)
    target = args.filename if args.filename is not None else cfg.pipeline.output_dir / BENCHMARK
    if Path(target).resolve() == cfg.signature.dataset_path or file_kind(target) == "signature":
        raise UserError(
            f"--filename: {target} is a signature file (the probe set every subject model is run on); "
            "a benchmark file goes elsewhere"
        )
    prepare_target(target, cfg.pipeline.output_dir, "benchmark", allowed=(BENCHMARK,))
    doc, shortfall = make_benchmark_set(
        cfg.space, labelled, patterns, args.samples_per_pattern, seed, signature
    )
    write_json_atomic(target, doc)
    print(
        f"wrote {len(doc['examples'])} benchmark sequences to {target} "
        f"(seed {seed}, disjoint from signature {signature.content_hash[:16]})"
    )
    print("  per group: " + ", ".join(f"{g} {n}" for g, n in _group_counts(doc).items()))
    for group, missing in shortfall.items():
        print(
            f"  note: {group} has {missing} fewer than asked: no more unused members at this vocab and length"
        )
    return 0


def run_data_gen(args) -> int:
    from weightzoo.config import load_config

    cfg = load_config(args.config_path)  # a bad config is reported before anything heavy is imported
    if args.ray_address:
        cfg.pipeline.backend, cfg.pipeline.ray_address = "ray", args.ray_address
    if cfg.pipeline.max_threads > 1 and cfg.pipeline.backend == "local":
        from weightzoo.run.workers import warm_up

        warm_up()  # the workers' server imports torch while this process does
    from weightzoo.run.pipeline import run_data_gen as generate

    board = _start_tensorboard(cfg)
    try:
        summary = generate(cfg, log=lambda line: print(line, flush=True), repair=args.repair)
    finally:
        if board is not None and not args.keep_tensorboard:
            from weightzoo.run.monitoring import stop

            stop(board)
    out = cfg.pipeline.output_dir
    print(
        f"wrote {summary.accepted} examples to {out}/data ({summary.attempted} attempted, "
        f"{summary.accepted / max(summary.attempted, 1):.1%} accepted, {summary.seconds:.0f} s)"
    )
    print("  rejected: " + ", ".join(f"{r} {n}" for r, n in summary.rejected_reasons.items()))
    print(f'  load it with: datasets.load_dataset("parquet", data_files="{out}/data/*.parquet")')
    return 0


def _start_tensorboard(cfg):
    """TensorBoard on metrics.tensorboard.port when asked for; a failure to start is a warning."""
    board = cfg.metrics.tensorboard
    if not (board.enabled and board.auto_launch):
        return None
    from weightzoo.run.monitoring import TensorBoardError, launch_tensorboard, tensorboard_url

    try:
        process = launch_tensorboard(cfg.metrics.dir, board.port)
    except TensorBoardError as e:
        print(f"warning: TensorBoard not started: {e}", file=sys.stderr)
        return None
    print(f"TensorBoard: {tensorboard_url(board.port)} (logs in {cfg.metrics.dir})", flush=True)
    return process


def render(args) -> int:
    from weightzoo.output.render import FORMAT_OPTIONS
    from weightzoo.output.render import render as write_rendered

    changes = {k: getattr(args, k) for k in FORMAT_OPTIONS if getattr(args, k) is not None}
    if not changes:
        raise UserError("render: say what to change (--style, --decimals, --compact-numbers, --numbers)")
    target = write_rendered(args.folder, args.to, changes, log=lambda line: print(line, flush=True))
    print(f"wrote {target} from {args.folder} with {changes}")
    return 0


def evaluate(args) -> int:
    from weightzoo.research.evaluate import evaluate as score
    from weightzoo.research.evaluation_report import markdown, write_report

    report = score(args.folder, args.completions, args.task, args.fresh, args.benchmark, args.split)
    prefix = args.report or args.completions.with_name(args.completions.stem + f".{args.task}-report")
    json_path, md_path = write_report(report, prefix)
    print(markdown(report), end="")
    print(f"wrote {json_path} and {md_path}")
    return 0


def harness_task(args) -> int:
    from weightzoo.research.harness import write_task

    for path in write_task(args.folder, args.to):
        print(f"wrote {path}")
    print(
        f"run it with: lm_eval --model hf --model_args pretrained=MODEL --include_path {args.to} --tasks TASK"
    )
    return 0


def inspect(args) -> int:
    from weightzoo.research.inspect_report import write_report

    print(f"wrote {write_report(args.folder, args.to)}")
    return 0


def split(args) -> int:
    from weightzoo.output.splits import split_dataset

    counts = split_dataset(
        args.folder, args.to, args.validation, args.test, args.hold_out_combinations, args.seed
    )
    print(f"wrote {args.to}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    print(f'  load it with: datasets.load_dataset("{args.to}")')
    return 0


def _group_counts(doc: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in doc["examples"]:
        counts[example["pattern"]] = counts.get(example["pattern"], 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as e:
        print(
            f"error: missing Python package '{e.name}'. Install weightzoo with its dependencies first: "
            "`make run`, or `pip install -e .`",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
