"""The `vidattn` command. Every subcommand is a thin call into the library; `vidattn SUBCOMMAND --help`
explains each."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from vidattn.runtime import ENV_VAR as ALLOCATOR_ENV_VAR
from vidattn.runtime import request_tuned_allocator

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


def _budget(args: argparse.Namespace, default: object) -> object:
    """The quickstart/benchmark budget with the command line's --seeds/--epochs/--workers/--videos-per-class."""
    from dataclasses import replace

    changes: dict[str, object] = {}
    if args.seeds:
        changes["seeds"] = tuple(int(x) for x in args.seeds.split(","))
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.workers:
        changes["workers"] = args.workers
    if args.videos_per_class:
        changes["synth"] = {**default.synth, "videos_per_class": args.videos_per_class}  # type: ignore[attr-defined]
    return replace(default, **changes)  # type: ignore[type-var]


@_command("quickstart")
def _quickstart(args: argparse.Namespace) -> int:
    import time

    from vidattn.quickstart import QuickstartSettings, run_quickstart

    _experiment_allocator()
    start = time.perf_counter()
    default = QuickstartSettings()
    results = run_quickstart(QuickstartSettings(out_dir=args.out, budget=_budget(args, default.budget)))
    _print_rows(results["stats"], f"SynthActions test accuracy, mean ± std over seeds; report in {args.out}/report.md")
    print(f"quickstart wall time: {time.perf_counter() - start:.0f} s")
    return 0


@_command("benchmark")
def _benchmark(args: argparse.Namespace) -> int:
    import time

    from vidattn.benchmark import SynthBudget, run_benchmark, select_rows

    _experiment_allocator()
    start = time.perf_counter()
    rows = select_rows(args.rows.split(",") if args.rows else None)
    results = run_benchmark(args.out, _budget(args, SynthBudget()), rows, report_only=args.report_only)
    _print_rows(results["stats"], f"benchmark test accuracy, mean ± std over seeds; report in {args.out}/report.md")
    print(f"benchmark wall time: {time.perf_counter() - start:.0f} s")
    return 0


def _experiment_allocator() -> None:
    """`quickstart` and `benchmark` are programs that run our own trial processes: they opt those in to the
    tuned allocator (a C3D trial: 52 s of kernel time on page faults -> 3 s, docs/performance.md) unless the
    environment already chose (`VIDATTN_CPU_ALLOCATOR=system` keeps glibc's defaults)."""
    if not os.environ.get(ALLOCATOR_ENV_VAR, "").strip():
        request_tuned_allocator()


def _print_rows(stats: dict, title: str) -> None:
    from vidattn.experiments import fmt

    print(f"\n{title}:")
    for key, m in stats.items():
        print(f"  {key:<14} top-1 {fmt(m.get('test_top1')):>13}%   reversal pairs "
              f"{fmt(m.get('reversal_pair_accuracy')):>13}%   W3/CBAM where-ratio "
              f"{fmt(m.get('attention.where.ratio'), 2)}")


@_command("train")
def _train(args: argparse.Namespace) -> int:
    from vidattn.config import load_config
    from vidattn.engine.train import resume_training, run_training

    overrides = list(args.overrides)
    if args.mfr_from:
        overrides.append(f"distill.teacher={args.mfr_from}")
    if args.resume:
        result = resume_training(args.resume, overrides)
    else:
        if args.config is None:
            raise ValueError("give a recipe (e.g. configs/tsm_w3_r50_8f_sthv1.yaml) or --resume RUN_DIR")
        result = run_training(load_config(args.config, overrides))
    print(f"run directory: {result.run_dir}")
    print(json.dumps(result.metrics, indent=2, default=float))
    return 0


@_command("test")
def _test(args: argparse.Namespace) -> int:
    from vidattn.engine.evaluate import run_evaluation

    # --config: the recipe of a weights file without a run folder (its data section says what to evaluate on)
    config, overrides = _recipe(args)
    result = run_evaluation(args.source, config=config, overrides=overrides,  # type: ignore[arg-type]
                            split=args.split, output_dir=args.out)
    print(json.dumps(result.metrics, indent=2, default=float))
    if result.output_dir is not None:
        print(f"written to {result.output_dir}")
    return 0


def _recipe(args: argparse.Namespace) -> tuple[object, list[str]]:
    """(``--config`` recipe with the overrides applied, or None; the overrides still to apply to a run's
    config.yaml): how ``test``, ``predict`` and ``visualize`` read the recipe."""
    from vidattn.config import load_config

    if args.config:
        return load_config(args.config, list(args.overrides)), []
    return None, list(args.overrides)


@_command("predict")
def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidattn.predict import annotate_video, annotated_names, predict_videos, write_predictions_json

    config, overrides = _recipe(args)
    frames = {"frame_template": args.frame_template, "start_index": args.start_index}
    preds = predict_videos(args.weights, args.videos, topk=args.topk, class_names=args.classes, config=config,
                           overrides=overrides, precision=args.precision, on_error="skip", **frames)
    for p in preds:
        if "error" in p:
            print(f"{p['video']}: error: {p['error']}")
            continue
        print(p["video"])
        for t in p["topk"]:
            print(f"  {t['probability']:6.3f}  {t['label']}")
    if args.json:
        write_predictions_json(preds, args.json)
    if args.annotate:
        names = annotated_names([p["video"] for p in preds], args.topk)
        for p, name in zip(preds, names):
            if "error" not in p:
                annotate_video(p["video"], p, Path(args.annotate) / name, **frames)
    return 1 if all("error" in p for p in preds) else 0


@_command("visualize")
def _visualize(args: argparse.Namespace) -> int:
    from vidattn.analysis.visualize import visualize_video

    config, overrides = _recipe(args)
    written = visualize_video(args.video, args.weights, args.out, compare_weights=args.compare,
                              num_frames=args.frames, config=config, overrides=overrides, stages=args.stages,
                              mp4=args.mp4)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


@_command("export")
def _export(args: argparse.Namespace) -> int:
    from vidattn.export import export_weights

    result = export_weights(args.weights, args.out, args.format, frames=args.frames, size=args.size,
                            class_names=args.classes, batch=args.batch, dynamic_batch=args.dynamic_batch,
                            opset=args.opset, tolerance=args.tolerance)
    shape = "x".join(str(d) for d in result.input_shape)
    print(f"{result.path}: {result.format}, input clips {shape} (B x 3 x T x H x W); "
          f"preprocessing and classes in {result.sidecar}")
    print(f"verified with {result.runtime}: max |logit difference| {result.max_abs_diff:.2e} "
          f"({result.rel_diff:.1e} of the largest logit)")
    return 0


@_command("stream")
def _stream(args: argparse.Namespace) -> int:
    import torch

    from vidattn.online import OnlineRecognizer
    from vidattn.stream import check_source, run_stream, stop_on_sigint

    check_source(args.source)  # a missing file fails before the model loads
    recognizer = OnlineRecognizer.from_weights(args.weights, fast=not args.no_fast,
                                               dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout

    def emit(record: dict) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()  # a line per frame as it is recognised

    try:
        with stop_on_sigint() as stop:
            summary = run_stream(recognizer, args.source, realtime=args.realtime, max_frames=args.max_frames,
                                 topk=args.topk, on_record=emit, video=args.video, queue_size=args.queue, stop=stop,
                                 timeout=args.timeout, frame_template=args.frame_template,
                                 start_index=args.start_index, fps=args.fps)
    finally:
        if out is not sys.stdout:
            out.close()
    if summary.error:
        print(f"vidattn: error: {summary.error}", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.error else 0


@_command("extract-frames")
def _extract_frames(args: argparse.Namespace) -> int:
    from vidattn.data.extract import extract_frames

    report = extract_frames(args.src, args.dst, short_side=args.short_side or None, quality=args.quality,
                            workers=args.workers, template=args.template, start_index=args.start_index,
                            overwrite=args.overwrite)
    print(f"extracted {len(report.extracted)}, already done {len(report.skipped)}, failed {len(report.failed)}; "
          f"{report.num_frames} frames written to {args.dst}")
    for path, cause in report.failed:
        print(f"  failed: {path}: {cause}")
    return 1 if report.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidattn",
        description="Efficient, attentive video action recognition: W3, TSM, CBAM, non-local, I3D, TAM and "
                    "the UCF-101 3D-CNN with attention.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (VIDATTN_DEBUG=1 shows full tracebacks)")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="let glibc's malloc keep large freed blocks for reuse in this process and its "
                             "children (faster CPU training and inference; same as VIDATTN_CPU_ALLOCATOR=tuned; "
                             "see docs/performance.md)")
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

    for name, help_text, description in (
        ("quickstart", "the README's main job: TSN vs TSM vs TSM+W3 on SynthActions, 3 seeds",
         "Generate the what-where-when SynthActions benchmark, pretrain the backbone on its appearances, "
         "fine-tune TSN, TSM and TSM+W3 for every seed with the same budget, and write a report (report.md, "
         "results.json, curves.png, attention figures, predictions). Rerun to continue an interrupted one."),
        ("benchmark", "the W3 paper's Tables 5-7 and the UCF-101 paper's Table 1 on SynthActions, 3 seeds",
         "TSM, +CBAM, +NL, +W3 (with/without MFR, AFR, SA, TA), CBAM with/without MFR, 3D-ConvNet with/without "
         "attention; mean ± std over seeds beside the papers' numbers (report.md, results.json, curves). "
         "Resumable: rerun the same command to continue."),
    ):
        p = sub.add_parser(name, help=help_text, description=description)
        p.add_argument("--out", default=f"vidattn-{name}", help=f"report folder (default ./vidattn-{name})")
        p.add_argument("--seeds", help="comma-separated training seeds (default 0,1,2)")
        p.add_argument("--epochs", type=int, help="training epochs per run")
        p.add_argument("--workers", type=int, help="runs trained at once, one CPU thread each (default: cores)")
        p.add_argument("--videos-per-class", type=int, help="SynthActions size")
        if name == "benchmark":
            p.add_argument("--rows", help="comma-separated row keys, run in this order (default: all; "
                                          "docs/benchmark.md)")
            p.add_argument("--report-only", action="store_true",
                           help="train nothing: write the report of the trials finished so far")

    p = sub.add_parser("train", help="train a model from a recipe YAML",
                       description="Train from a recipe (configs/*.yaml) with key=value overrides, e.g. "
                                   "`vidattn train configs/tsm_r50_8f_sthv1.yaml data.root=/data/sthv1 "
                                   "optim.lr=0.02`. Runs under torchrun unchanged (DDP).")
    p.add_argument("config", nargs="?", help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run bit-for-bit")
    p.add_argument("--mfr-from", metavar="RUN_DIR",
                   help="MFR stage 2 (W3 eq. 9): distil the refined features of this stage-1 run")

    p = sub.add_parser("test", help="evaluate a run directory or weights file",
                       description="Evaluate with the run's config.eval views (clips x crops); override with "
                                   "e.g. eval.clips=2 eval.crops=10 eval.full_res=true data.root=... "
                                   "The config is the run's config.yaml (beside the weights), else --config.")
    p.add_argument("source", help="run directory or weights file")
    p.add_argument("--config", metavar="RECIPE.yaml",
                   help="recipe for the data and views (default: config.yaml of the run folder holding the "
                        "weights; required for a weights file outside a run folder)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--out", help="output folder (default RUN_DIR/eval-SPLIT-VIEWS)")

    p = sub.add_parser("predict", help="top-5 labels with probabilities for videos",
                       description="Top-k classes with probabilities per video (the UCF-101 paper's Fig. 2), "
                                   "optionally as JSON and as annotated videos. The clips are those vidattn test "
                                   "takes: the run's config.yaml says which frames, crops and views; key=value "
                                   "overrides as for test (eval.clips=2 eval.crops=3 data.crop_size=256).")
    p.set_defaults(overrides=[])
    p.add_argument("videos", nargs="+", help="video files or frame folders")
    p.add_argument("--weights", required=True, help="weights file (.safetensors) or run directory")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--classes", help="class names file (one per line); default: from the run/weights")
    p.add_argument("--config", metavar="RECIPE.yaml",
                   help="recipe of a weights file outside a run folder (its data/eval sections say which frames, "
                        "crops and views; default: the run's config.yaml, else the config defaults)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 where the hardware runs it natively, else fp32 (vidattn test uses the "
                        "recipe's train.precision; fp32 gives its logits)")
    p.add_argument("--json", help="write the predictions to this JSON file")
    p.add_argument("--annotate", metavar="DIR", help="write each video with its top-k overlaid into DIR")
    p.add_argument("--frame-template", metavar="TEMPLATE",
                   help="file names in frame folders, printf or format style (default {:05d}.jpg; "
                        "mmaction2: img_%%05d.jpg)")
    p.add_argument("--start-index", type=int, default=1, help="number of a frame folder's first file (default 1)")

    p = sub.add_parser("visualize", help="W3 spatio-temporal attention over a video (W3 paper Fig. 3)",
                       description="Overlay a model's spatio-temporal attention on evenly sampled frames: a PNG "
                                   "grid (RGB row, one row per model) and a GIF (MP4 with --mp4); with "
                                   "--compare, a second model (e.g. TSM+CBAM) in its own row. One view of the "
                                   "clips vidattn test takes; key=value overrides as for test.")
    p.set_defaults(overrides=[])
    p.add_argument("video", help="video file or frame folder")
    p.add_argument("--weights", required=True, help="weights file or run directory of an attention model")
    p.add_argument("--compare", help="weights of a second attention model (e.g. CBAM) to show beside")
    p.add_argument("--out", default="attention", help="output folder (default ./attention)")
    p.add_argument("--frames", type=int, default=5, help="frames shown (default 5, as Fig. 3)")
    p.add_argument("--config", metavar="RECIPE.yaml",
                   help="recipe of a weights file outside a run folder (its data/eval sections say which frames, "
                        "crops and views; default: the run's config.yaml, else the config defaults)")
    p.add_argument("--stages", type=int, default=1, help="average the last N stages' maps (default 1)")
    p.add_argument("--mp4", action="store_true", help="also write an MP4")

    p = sub.add_parser("export", help="ONNX / TorchScript / torch.export file of a model, checked against PyTorch",
                       description="Write a weights file's model as ONNX (onnxruntime), TorchScript or a "
                                   "torch.export ExportedProgram taking clips (B, 3, T, H, W) and returning "
                                   "logits, plus FILE.json with the preprocessing and class names; the written "
                                   "file is run on a random clip batch and must give PyTorch's logits "
                                   "(docs/deploy.md).")
    p.add_argument("weights", help="weights file (.safetensors) or run directory")
    p.add_argument("--format", choices=("onnx", "torchscript", "exported-program"), default="onnx",
                   help="default onnx (needs the onnx extra: pip install 'vidattn[onnx]')")
    p.add_argument("--out", help="output file (default: the weights' or run folder's name + .onnx/.pt/.pt2)")
    p.add_argument("--frames", type=int, help="frames T per clip (default: the model's; 2D models need exactly it)")
    p.add_argument("--size", type=int, help="crop size H = W (default: the run's config, else 224; C3D 112)")
    p.add_argument("--batch", type=int, default=1, help="clips per call (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (traced with 2, checked with 3)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |logit difference| over the largest |logit| (default 1e-4)")
    p.add_argument("--classes", help="class names file (one per line); default: from the run/weights")

    p = sub.add_parser("stream", help="online recognition of a video, frame folder, webcam or URL, frame by frame",
                       description="Decode SOURCE on a background thread and run a causal model (model.options: "
                                   "{causal: true}) on one frame at a time: a JSON line per frame (source index and "
                                   "timestamp, top-k of the running video prediction and of the frame, latency, "
                                   "frames dropped so far), optionally an annotated MP4. Live sources drop the "
                                   "oldest queued frame when the model falls behind (counted); Ctrl-C ends cleanly "
                                   "with a summary on stderr (docs/deploy.md).")
    p.add_argument("source", help="video file, frame folder, webcam (/dev/video0) or stream URL (rtsp://, "
                                  "http(s)://, udp://, ...)")
    p.add_argument("--weights", required=True, help="weights file or run directory of a causal model")
    p.add_argument("--out", help="write the JSON lines to this file (default: stdout)")
    p.add_argument("--video", metavar="OUT.mp4", help="annotated video: the frames as the model sees them, the "
                                                     "running label and, for attention models, the spatial mask")
    p.add_argument("--realtime", action="store_true",
                   help="files and folders: keep the source's pace and drop frames when the model falls behind "
                        "(default: every frame; webcams and URLs are always realtime)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N source frames")
    p.add_argument("--topk", type=int, default=5, help="labels per JSON line (default 5)")
    p.add_argument("--queue", type=int, default=4, metavar="N", help="decoded frames queued for the model (default 4)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="model precision (bfloat16: autocast, fast only on CPUs with native bf16)")
    p.add_argument("--no-fast", action="store_true", help="the reference modules instead of the fast layer")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds a webcam or URL may take to open or to send data (default 10)")
    p.add_argument("--fps", type=float, help="frame rate of a frame folder (default 30; overrides a video's)")
    p.add_argument("--frame-template", metavar="TEMPLATE",
                   help="file names in a frame folder (default {:05d}.jpg; mmaction2: img_%%05d.jpg)")
    p.add_argument("--start-index", type=int, default=1, help="number of a frame folder's first file (default 1)")

    p = sub.add_parser("extract-frames", help="turn a folder of videos into JPEG frame folders",
                       description="Decode every video under SRC into DST/<relative path without extension>/"
                                   "00001.jpg ... (resized, in parallel, resumable: finished folders are "
                                   "skipped), the layout the frame-folder loaders read several times faster.")
    p.add_argument("src", help="folder of videos (searched recursively)")
    p.add_argument("dst", help="output folder")
    p.add_argument("--short-side", type=int, default=256, help="resize the short side to this (0: keep)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--template", default="{:05d}.jpg", help="frame file name template (default {:05d}.jpg)")
    p.add_argument("--start-index", type=int, default=1, help="number of the first frame (default 1)")
    p.add_argument("--overwrite", action="store_true", help="redo folders that are already complete")
    return parser


#: ``section.key=value`` (or a top-level ``seed=1``): a config override wherever it stands on the line
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")
_TAKES_OVERRIDES = ("train", "test", "predict", "visualize")
#: commands whose positional arguments are video paths take only dotted overrides (``eval.clips=2``), so a
#: file named ``a=b.mp4`` stays a video
_SECTION_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+=")
_VIDEO_COMMANDS = ("predict", "visualize")


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(other arguments, overrides): for ``train``/``test``/``predict``/``visualize`` every ``key.sub=value``
    token, before or after any flag, is an override, so ``vidattn train --resume RUN train.epochs=5`` and
    ``vidattn test RUN --split val eval.clips=2`` mean what they say. A token right after ``--`` is kept."""
    argv = list(argv)
    command_at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command_at is None or argv[command_at] not in _TAKES_OVERRIDES:
        return argv, []
    rest, overrides = argv[: command_at + 1], []
    literal = False
    for token in argv[command_at + 1 :]:
        if token == "--" and not literal:
            literal = True
            continue
        if not literal and (_SECTION_OVERRIDE if argv[command_at] in _VIDEO_COMMANDS else _OVERRIDE).match(token):
            overrides.append(token)
        else:
            rest.append(token)
    return rest, overrides


def main(argv: Sequence[str] | None = None) -> int:
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)
    if hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *overrides]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.tune_allocator:
        request_tuned_allocator()  # the process opts in; library calls never do it on their own
    if os.environ.get("VIDATTN_DEBUG", "") not in ("", "0"):
        return _COMMANDS[args.command](args)  # full tracebacks
    try:
        return _COMMANDS[args.command](args)
    except _user_errors() as err:
        print(f"vidattn: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"vidattn: {error_line(err) if str(err) else 'interrupted'}", file=sys.stderr)
        return 130


def _user_errors() -> tuple[type[BaseException], ...]:
    """Our error types: a user-facing problem with a one-line message naming the file or key."""
    from vidattn.data.video import VideoError
    from vidattn.engine.train import NonFiniteLossError
    from vidattn.export import ExportError
    from vidattn.models.compat import CheckpointError

    return (ValueError, KeyError, OSError, CheckpointError, VideoError, NonFiniteLossError, ExportError)


def error_line(err: BaseException) -> str:
    """One line for the user: ``<file or key>: <problem>`` (set ``VIDATTN_DEBUG=1`` for the traceback)."""
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.filename is not None and (not err.args or len(err.args) == 2):
        message = f"{err.filename}: {err.strerror or err}"
    else:
        message = str(err) or type(err).__name__
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
