"""The `vidattn` command. Every subcommand is a thin call into the library; `vidattn SUBCOMMAND --help`
explains each."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = fn
        return fn
    return deco


@_command("list-models")
def _list_models(args: argparse.Namespace) -> int:
    from vidattn import list_models

    for name in list_models(args.pattern):
        print(name)
    return 0


@_command("flops")
def _flops(args: argparse.Namespace) -> int:
    from vidattn.analysis.flops import count_model, format_table, paper_table

    if args.table or args.model is None:
        results = paper_table()
        print(format_table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return 0
    options = json.loads(args.options) if args.options else {}
    count = count_model(args.model, args.frames, args.size, args.classes, **options)
    print(f"{args.model}: {count.gmacs:.2f} GMACs per view (1 clip x 1 crop, {args.frames}x{args.size}x{args.size}),"
          f" {count.params / 1e6:.2f} M parameters")
    for op, macs in sorted(count.by_operator.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<14} {macs / 1e9:9.3f} G")
    return 0


@_command("quickstart")
def _quickstart(args: argparse.Namespace) -> int:
    from vidattn.analysis.flops import format_table, paper_table

    # Until the SynthActions training quickstart lands, the main job shows the compute tables.
    print(format_table(paper_table()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidattn",
        description="Efficient, attentive video action recognition: W3, TSM, CBAM, non-local, I3D, TAM and "
                    "the UCF-101 3D-CNN with attention.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list-models", help="list registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'tsm_*'")

    p = sub.add_parser("flops", help="multiply-accumulates per view and parameters of a model",
                       description="MACs per view (1 clip x 1 crop; the papers' 'GFLOPs') and parameters. "
                                   "Without MODEL, or with --table, prints the papers' compute tables "
                                   "beside our counts.")
    p.add_argument("model", nargs="?", help="registered model name (see list-models)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--size", type=int, default=224, help="crop size in pixels (default 224)")
    p.add_argument("--classes", type=int, default=174, help="classifier size (default 174, Something-Something)")
    p.add_argument("--options", help='model options as JSON, e.g. \'{"afr": false}\'')
    p.add_argument("--table", action="store_true", help="print the W3 paper's Tables 1/6/8 rows beside ours")
    p.add_argument("--json", help="with --table: also write the rows to this JSON file")

    sub.add_parser("quickstart", help="the README's main job")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"vidattn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
