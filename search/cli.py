"""gsa-nas: search and ablation studies of Global Self-Attention (GSA) image networks.

Thin wiring from arguments to the packages. Every user error (bad study file, unknown
variant, missing data or run directory) surfaces as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from search.output import guard_stdout
from search.tune.ray_env import apply_ray_env

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError)
EXIT_USAGE = 2
SET_HELP = ("override a study key, repeatable; values are YAML: train.epochs=5, num_samples=8, "
            "'seeds=[0, 1]', pruner.name=asha")


def _parse_sets(items: Sequence[str]) -> dict[str, object]:
    """`key=value` pairs; values are YAML scalars/lists (`3`, `1e-4`, `true`, `[2, 3]`).

    A malformed item is a one-line ValueError that shows the item (escaped where it holds
    line breaks or control characters).
    """
    import yaml

    out: dict[str, object] = {}
    for item in items:
        shown = item if item.isprintable() else repr(item)
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, but got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            problem = " ".join(str(getattr(err, "problem", None) or err).split())
            raise ValueError(f"--set {shown}: the value is not valid YAML ({problem}); quote lists and "
                             f"mappings, e.g. --set \"seeds=[0, 1]\"") from None
        except RecursionError:
            raise ValueError(f"--set {shown}: the value is nested too deeply to read; a study value needs a few "
                             f"levels") from None
        except Exception as err:  # PyYAML's constructors on `2020-13-45`, `!!int x`, `!!bool y`, `!!timestamp z`
            detail = " ".join((repr(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)).split())
            raise ValueError(f"--set {shown}: the value is YAML that cannot be built ({err.__class__.__name__}: "
                             f"{detail}); fix it, or quote it to pass it as text") from None
    return out


def _cmd_variants(args: argparse.Namespace) -> int:
    from gsa_space.describe import variants_table

    print(variants_table())
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from gsa_space.describe import describe_net

    print(describe_net(args.name, overrides=_parse_sets(args.set), input_size=args.input_size))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from search.study import load_study
    from search.validate import validation_summary

    study = load_study(args.study, overrides=_parse_sets(args.set))
    print(validation_summary(study))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from search.runner import run_from_cli

    return run_from_cli(
        study=args.study, name=args.name, out=args.out, address=args.address,
        storage=args.storage, overrides=_parse_sets(args.set), resume=args.resume,
        report=not args.no_report, retry_failed=args.retry_failed, storage_path=args.storage_path,
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from reports import write_report

    path = write_report(Path(args.run_dir), out=Path(args.out) if args.out else None)
    print(f"report written to {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from reports import write_comparison

    path = write_comparison([Path(p) for p in args.run_dirs], out=Path(args.out), allow_mismatch=args.allow_mismatch)
    print(f"comparison written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsa-nas", description=__doc__.splitlines()[0],
        epilog="Quick start: gsa-nas run quickstart; then open runs/quickstart/report.html.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("variants", help="list the network variants with params and MACs")
    p.set_defaults(func=_cmd_variants)

    p = sub.add_parser("describe", help="per-stage table of a variant against its conv counterpart")
    p.add_argument("name", help="a variant name (gsa-nas variants lists them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="network override, repeatable: gsa.heads=4, stages.2.extent=3, width_mult=0.5")
    p.add_argument("--input-size", type=int, default=None)
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser("validate", help="load a study, print the plan; trains nothing")
    p.add_argument("study", help="a study file, or the name of one in studies/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run a study (or --resume RUN_DIR)")
    p.add_argument("study", nargs="?", help="a study file, or the name of one in studies/")
    p.add_argument("--name", default=None, help="run name (default: the study's name)")
    p.add_argument("--out", default=None, help="parent directory of run directories (default: runs)")
    p.add_argument("--address", default=None, help="an existing Ray cluster to join")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in the run dir)")
    p.add_argument("--storage-path", default=None, metavar="URI",
                   help="where Ray Tune writes the experiment and trial checkpoints: a directory or shared "
                        "mount, or a pyarrow URI (s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http; "
                        "credentials from the AWS_* variables of every node); default RUN_DIR/tune, "
                        "--resume reuses the run's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: train failed trials again (not diverged ones), as new attempts")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="write report.md/.html, figures and tables for a run")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="one report over several runs of one set-up")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare runs that differ in data set, budget, objectives or input size "
                        "(refused otherwise); the report then says so at the top")
    p.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    apply_ray_env()  # before anything imports ray: some of Ray's settings are read at import
    guard_stdout()   # `gsa-nas run ... | head` must not kill a running study
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"gsa-nas: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
