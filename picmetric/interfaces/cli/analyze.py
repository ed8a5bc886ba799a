"""``picmetric analyze`` (files, folders, URLs; ``--store`` keeps them, on the workers when a broker is configured)
and ``picmetric ingest s3://bucket/prefix`` (every image under a prefix, as one batch)."""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from picmetric.core.analyzer import Analysis, shared_analyzer
from picmetric.core.decoding import IMAGE_SUFFIXES
from picmetric.core.drawing import render
from picmetric.core.options import AnalysisOptions
from picmetric.errors import PicMetricError
from picmetric.interfaces.cli.common import (
    UsageError,
    checked_options,
    expand_inputs,
    is_url,
    load_target,
    open_jobs,
    open_service,
    option_flags,
    prepare_out_dir,
    summary,
)
from picmetric.service.jobs import JobInput, batch_counts
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser("analyze", help="analyse image files, folders (recursively) or URLs")
    analyze.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
    analyze.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    analyze.add_argument("--out", metavar="DIR", help="write renders and JSON here")
    option_flags(analyze)
    analyze.add_argument(
        "--store", action="store_true",
        help="keep the analysis (database + object store); with PICMETRIC_BROKER_URL, photos go to the workers",
    )  # fmt: skip
    analyze.set_defaults(func=cmd_analyze)

    ingest = commands.add_parser("ingest", help="queue every image under s3://bucket/prefix for analysis")
    ingest.add_argument("location", metavar="s3://bucket/prefix")
    ingest.add_argument("--no-follow", action="store_true", help="with a broker: queue and return at once")
    option_flags(ingest)
    ingest.set_defaults(func=cmd_ingest)


#: one picture of an analysis' results (objects or faces drawn on the photo), drawn when called
Draw = Callable[[str], bytes]


def _write_outputs(analysis: Analysis, draw: Draw, out_dir: Path) -> list[Path]:
    """Pictures and JSON of one analysis into ``out_dir``, which ``_prepare_out_dir`` created before any work."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(analysis.name or "image").stem)[:60] or "image"
    stem = f"{stem}_{analysis.sha256[:8]}"
    written = []
    for kind in analysis.render_kinds:
        path = out_dir / f"{stem}_{kind}.{analysis.options.render_format}"
        path.write_bytes(draw(kind))
        written.append(path)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(analysis.to_dict(), indent=2))
    written.append(path)
    return written


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    options = checked_options(args)
    problem = prepare_out_dir(args.out) if args.out else None
    if problem:
        raise UsageError(problem)
    targets = expand_inputs(args.inputs)
    service = open_service(settings) if args.store else None
    jobs = open_jobs(service) if service is not None else None
    if jobs is not None and jobs.uses_broker and len(targets) > 1:  # several photos, and workers to send them to
        return _analyze_on_workers(args, targets, options, jobs)
    results: list[dict] = []
    failures = 0
    progress = tqdm(targets, unit="image", file=sys.stderr, disable=len(targets) < 2 or args.quiet)
    for target in progress:
        progress.set_postfix_str(Path(target).name[:30])
        try:
            image = load_target(target, settings)
            if service is not None:
                stored = service.submit(image, options=options)
                _report(args, results, target, stored.analysis, _stored_pictures(service, stored), stored.cached)
            else:
                analysis = shared_analyzer(settings).analyze(image, options)
                _report(args, results, target, analysis, functools.partial(render, image, analysis), False)
        except PicMetricError as exc:
            failures += 1
            results.append({"input": target, "error": str(exc)})
            tqdm.write(f"picmetric: {target}: {exc}", file=sys.stderr)
    return _finish(args, results, failures)


def _stored_pictures(service, stored) -> Draw:
    """A stored analysis' pictures: drawn once, then kept in the store with it (the API serves the same ones)."""
    return lambda kind: service.picture(stored, kind).content


def _report(
    args: argparse.Namespace, results: list[dict], target: str, analysis: Analysis, draw: Draw, from_history: bool
) -> None:
    """Pictures are drawn only with ``--out``: an analysis itself draws nothing."""
    written = _write_outputs(analysis, draw, Path(args.out)) if args.out else []
    results.append({"input": target, **analysis.to_dict()})
    if not args.json:
        lines = summary(analysis, from_history)
        if written:
            lines.append("  saved  : " + ", ".join(str(p) for p in written))
        tqdm.write("\n".join(lines), file=sys.stdout)


def _finish(args: argparse.Namespace, results: list[dict], failures: int) -> int:
    if args.json:
        json.dump(results if len(results) != 1 else results[0], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if failures else 0


def _analyze_on_workers(args: argparse.Namespace, targets: list[str], options: AnalysisOptions, jobs) -> int:
    """With a broker: every photo becomes a job of one batch; the workers analyse, this follows the batch."""
    inputs = []
    for target in targets:
        if is_url(target):
            inputs.append(JobInput(source="url", name=target, url=target))
        else:
            try:
                inputs.append(JobInput(source="upload", name=Path(target).name, data=Path(target).read_bytes()))
            except OSError as exc:
                print(f"picmetric: {target}: cannot read ({exc.strerror})", file=sys.stderr)
                return 1
    batch_id, _ = jobs.submit(inputs, options, batch=True)
    assert batch_id is not None
    finished = _follow(jobs, batch_id, quiet=args.quiet)
    results: list[dict] = []
    failures = 0
    for target, job in zip(targets, finished, strict=True):
        if job.state != "done":
            failures += 1
            results.append({"input": target, "error": job.error})
            print(f"picmetric: {target}: {job.error}", file=sys.stderr)
            continue
        stored = jobs.result(job)
        _report(args, results, target, stored.analysis, _stored_pictures(jobs.service, stored), stored.cached)
    return _finish(args, results, failures)


def _follow(jobs, batch_id: str, quiet: bool = False, poll_s: float = 0.25) -> list:
    """Wait for a batch with a progress bar (done and failed count as progress); its jobs once all finished."""
    records = jobs.batch(batch_id)
    bar = tqdm(total=len(records), unit="image", file=sys.stderr, disable=quiet)
    while True:
        counts = batch_counts(records)
        done = counts["done"] + counts["failed"]
        bar.update(done - bar.n)
        bar.set_postfix(queued=counts["queued"], failed=counts["failed"])
        if done == len(records):
            bar.close()
            return records
        time.sleep(poll_s)
        records = jobs.batch(batch_id)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Queue every image under an S3 prefix (the bulk case); with no broker they run here, in this process."""
    options = checked_options(args)
    service = open_service(settings)
    urls = service.list_s3_images(args.location, IMAGE_SUFFIXES)
    if not urls:
        print(f"picmetric: no images under {args.location}", file=sys.stderr)
        return 1
    jobs = open_jobs(service)
    batch_id, _ = jobs.submit([JobInput(source="s3", name=url, url=url) for url in urls], options, batch=True)
    print(f"batch {batch_id}: {len(urls)} images queued ({jobs.queue.status().broker})", file=sys.stderr)
    if args.no_follow and jobs.uses_broker:
        return 0
    finished = _follow(jobs, batch_id, quiet=args.quiet)
    failed = [job for job in finished if job.state == "failed"]
    for job in failed:
        print(f"picmetric: {job.name}: {job.error}", file=sys.stderr)
    print(f"{len(finished) - len(failed)} analysed or found in history, {len(failed)} failed")
    return 1 if failed else 0
