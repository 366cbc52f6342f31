"""`facecast aniportrait check FIXTURE_DIR` and `facecast weights convert --weights DIR -o OUT`."""

from __future__ import annotations

import argparse
import importlib
import math
import time
from collections.abc import Callable
from pathlib import Path

from facecast.cli.errors import CliError

# (stage, module, function): each returns list[StageResult]; a module still being written is "not available"
STAGES = [
    ("landmarks", "facecast.models.aniportrait.conformance.landmarks", "check_landmarks"),
    ("audio", "facecast.models.aniportrait.conformance.audio", "check_audio"),
    ("pipeline", "facecast.models.aniportrait.conformance.pipeline", "check_pipeline"),
]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("aniportrait", help="AniPortrait engine tools (conformance check)")
    ani_sub = parser.add_subparsers(dest="aniportrait_command", required=True, metavar="ACTION")
    check = ani_sub.add_parser(
        "check", help="run every stage a conformance fixture covers and compare with its recorded outputs"
    )
    check.add_argument("fixture", type=Path, metavar="FIXTURE_DIR", help="folder laid out like fixtures/A")
    check.add_argument(
        "--stage", action="append", choices=[s[0] for s in STAGES], help="only these stages (repeatable)"
    )
    check.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    check.set_defaults(func=run_check)

    weights = sub.add_parser("weights", help="AniPortrait weight folders")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    convert = weights_sub.add_parser(
        "convert", help="published pretrained_model/ tree → one safetensors folder the engine also accepts"
    )
    convert.add_argument(
        "--weights", type=Path, required=True, metavar="DIR", help="published weights folder"
    )
    convert.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="new folder to write"
    )
    convert.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    convert.set_defaults(func=run_convert)


def _load_stage(module_name: str, function: str) -> Callable | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, function, None)


def _format_error(value: float) -> str:
    return "missing" if math.isinf(value) else f"{value:.3g}"


def run_check(args: argparse.Namespace) -> int:
    from facecast.models.aniportrait.networks.checkpoint import WeightsError

    fixture: Path = args.fixture
    if not fixture.is_dir():
        raise CliError(f"fixture folder {fixture} does not exist")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    failed = 0
    for stage, module_name, function in STAGES:
        if args.stage and stage not in args.stage:
            continue
        check = _load_stage(module_name, function)
        if check is None:
            print(f"{stage:10s} not available (not implemented yet)")
            continue
        start = time.perf_counter()
        try:
            results = check(fixture)
        except (FileNotFoundError, WeightsError, KeyError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CliError(f"{stage} stage: {message}") from exc
        for result in results:
            status = "ok" if result.passed else "FAIL"
            note = f"  ({result.note})" if result.note else ""
            print(
                f"{result.stage:10s} {result.name:60s} max_abs_err {_format_error(result.max_abs_error):>9s}"
                f"  tol {result.tolerance:.0e}  {status}{note}"
            )
            failed += not result.passed
        print(f"{stage:10s} {len(results)} checks in {time.perf_counter() - start:.1f} s")
    if failed:
        print(f"FAILED: {failed} check(s) outside tolerance")
        return 1
    print("all checks passed")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from facecast.models.aniportrait.networks.checkpoint import WeightsError
    from facecast.models.aniportrait.networks.weights_convert import convert_weights

    try:
        files = convert_weights(args.weights, args.output, args.dtype)
    except WeightsError as exc:
        raise CliError(str(exc)) from exc
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {args.output}")
    return 0
