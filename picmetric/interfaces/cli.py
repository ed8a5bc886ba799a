"""Command line: ``picmetric analyze PATH_OR_URL_OR_DIR... [--json] [--out DIR] [--store]``, ``picmetric ingest
s3://bucket/prefix``, ``picmetric worker``, ``picmetric serve``, ``picmetric dashboard`` and maintenance."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import sysconfig
import tempfile
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from tqdm import tqdm

from picmetric import __version__
from picmetric.core.intake import IMAGE_SOURCES, IMAGE_SUFFIXES, fetch_image
from picmetric.core.pipeline import (
    CLASSIFIERS,
    DETECTOR_SIZES,
    FACE_DETECTORS,
    ONNX_LAYOUTS,
    PRECISIONS,
    TASKS,
    Analysis,
    AnalysisOptions,
    default_analyzer,
    render,
)
from picmetric.errors import PicMetricError
from picmetric.interfaces.cli_models import cmd_explain, cmd_models, is_url, load_target, prepare_out_dir
from picmetric.settings import get_settings


class UsageError(PicMetricError):
    """A wrong flag or value on the command line: exit code 2, like argparse's own refusals."""


#: the flag a person typed for each option whose flag is not simply its name with dashes
_FLAG_NAMES = {"iou_threshold": "--iou", "render_format": "--format"}


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files and URLs as given; a folder becomes every image file under it (recursively, by extension, sorted)."""
    expanded: list[str] = []
    for target in inputs:
        folder = Path(target)
        if not is_url(target) and folder.is_dir():
            found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise PicMetricError(f"{target}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            expanded += found
        else:
            expanded.append(target)
    return expanded


def _percent(value: float) -> str:
    return f"{value:.0%}"


def summary(analysis: Analysis, from_history: bool = False) -> list[str]:
    """Readable lines for one analysis."""
    head = f"{analysis.name or analysis.sha256[:12]}  {analysis.width}x{analysis.height} {analysis.format}"
    when = f"from history, analysed {analysis.created_at:%Y-%m-%d %H:%M}" if from_history else None
    lines = [f"{head}  ({when or format(analysis.timings_ms['total'], '.0f') + ' ms'})"]
    if analysis.classification is not None:
        c = analysis.classification
        lines.append(
            "  labels : " + ", ".join(f"{n} {_percent(p)}" for n, p in zip(c.names, c.confidence, strict=True))
        )
    if analysis.detections is not None:
        d = analysis.detections
        counts = Counter(d.labels)
        text = ", ".join(f"{n} {label}" for label, n in counts.most_common()) or "none"
        lines.append(f"  objects: {text}")
    if analysis.faces is not None:
        scores = ", ".join(_percent(p) for p in analysis.faces.confidence)
        lines.append(f"  faces  : {len(analysis.faces)}" + (f" ({scores})" if scores else ""))
    return lines


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


def _options(args: argparse.Namespace) -> AnalysisOptions:
    return AnalysisOptions(
        tasks=tuple(args.tasks.split(",")),
        classifier=args.classifier,
        top_k=args.top_k,
        detector=args.detector,
        detector_size=args.detector_size,
        min_confidence=args.min_confidence,
        iou_threshold=args.iou,
        merge_synonyms=args.merge_synonyms,
        min_face_size=args.min_face_size,
        face_confidence=args.face_confidence,
        render_format=args.format,
        face_detector=args.face_detector,
        precision=args.precision,
    )


def _flag(option: str) -> str:
    return _FLAG_NAMES.get(option, "--" + option.replace("_", "-"))


def _checked_options(args: argparse.Namespace) -> AnalysisOptions:
    """The options from the flags; a refusal names the flags as typed (--top-k, not top_k)."""
    try:
        return _options(args)
    except PicMetricError as exc:
        fields = "|".join(sorted(AnalysisOptions.model_fields, key=len, reverse=True))
        message = re.sub(rf"\b({fields})\b", lambda m: _flag(m.group(1)), str(exc))
        raise UsageError(message) from None


def cmd_analyze(args: argparse.Namespace) -> int:
    options = _checked_options(args)
    problem = prepare_out_dir(args.out) if args.out else None
    if problem:
        raise UsageError(problem)
    targets = expand_inputs(args.inputs)
    service = _service() if args.store else None
    if service is not None and service.settings.broker_url is not None and len(targets) > 1:
        return _analyze_on_workers(args, targets, options, service)
    results: list[dict] = []
    failures = 0
    progress = tqdm(targets, unit="image", file=sys.stderr, disable=len(targets) < 2 or args.quiet)
    for target in progress:
        progress.set_postfix_str(Path(target).name[:30])
        try:
            image = load_target(target)
            if service is not None:
                stored = service.submit(image, options=options)
                _report(args, results, target, stored.analysis, _stored_pictures(service, stored), stored.cached)
            else:
                analysis = default_analyzer(get_settings()).analyze(image, options)
                _report(args, results, target, analysis, functools.partial(render, image, analysis), False)
        except PicMetricError as exc:
            failures += 1
            results.append({"input": target, "error": str(exc)})
            tqdm.write(f"picmetric: {target}: {exc}", file=sys.stderr)
    return _finish(args, results, failures)


def _stored_pictures(service, stored) -> Draw:
    """A stored analysis' pictures: drawn once, then kept in the store with it (the API serves the same ones)."""
    return lambda kind: service.blob(service.render(stored, kind)[0])


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


def _analyze_on_workers(args: argparse.Namespace, targets: list[str], options: AnalysisOptions, service) -> int:
    """With a broker: every photo becomes a job of one batch; the workers analyse, this follows the batch."""
    from picmetric.service.jobs import JobInput

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
    jobs = _jobs(service)
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
        _report(args, results, target, stored.analysis, _stored_pictures(service, stored), stored.cached)
    return _finish(args, results, failures)


def _follow(jobs, batch_id: str, quiet: bool = False, poll_s: float = 0.25) -> list:
    """Wait for a batch with a progress bar (done and failed count as progress); its jobs once all finished."""
    import time

    from picmetric.service.jobs import batch_counts

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


def cmd_ingest(args: argparse.Namespace) -> int:
    """Queue every image under an S3 prefix (the bulk case); with no broker they run here, in this process."""
    from picmetric.service.jobs import JobInput

    options = _checked_options(args)
    service = _service()
    urls = service.list_s3_images(args.location, IMAGE_SUFFIXES)
    if not urls:
        print(f"picmetric: no images under {args.location}", file=sys.stderr)
        return 1
    jobs = _jobs(service)
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


def cmd_worker(args: argparse.Namespace) -> int:
    from picmetric.interfaces.worker import run_worker

    settings = get_settings()
    if settings.broker_url is None:
        print(
            "picmetric: a worker needs a broker: set PICMETRIC_BROKER_URL (redis://... or amqp://...)", file=sys.stderr
        )
        return 2
    concurrency = args.concurrency or settings.worker_concurrency
    threads = args.threads or (settings.worker_threads if concurrency == 1 else 1)
    if concurrency > 1 and threads > 1:
        print("picmetric: choose --concurrency (processes) or --threads (jobs in one process), not both",
              file=sys.stderr)  # fmt: skip
        return 2
    return run_worker(settings, concurrency=concurrency, threads=threads, loglevel=args.log_level)


def _service():
    from picmetric.service.analyses import AnalysisService

    return AnalysisService(get_settings())


def _jobs(service):
    from picmetric.service.jobs import JobService

    return JobService(service)


def cmd_history(args: argparse.Namespace) -> int:
    from picmetric.service.analyses import HistoryFilter

    page = _service().history(
        HistoryFilter(text=args.text, min_faces=args.min_faces, source=args.source),
        page=args.page,
        page_size=args.limit,
    )
    if args.json:
        json.dump(
            [item.__dict__ | {"created_at": item.created_at.isoformat()} for item in page.items], sys.stdout, indent=2
        )
        sys.stdout.write("\n")
        return 0
    print(page.summary)
    for item in page.items:
        top = f"{item.top_label} {item.top_confidence:.0%}" if item.top_label else item.status
        classes = ", ".join(item.object_classes) or "-"
        print(
            f"{item.created_at:%Y-%m-%d %H:%M}  {item.sha256[:12]}  {(item.name or '')[:28]:28s}  "
            f"{top:28s}  faces {item.face_count}  objects: {classes}"
        )
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.yes:
        print("picmetric: reset deletes every stored image and analysis; run again with --yes", file=sys.stderr)
        return 2
    _service().reset()
    print("all stored analyses and images deleted")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from picmetric.service.analyses import migrate_database

    settings = get_settings()
    if args.action == "upgrade":
        revision = migrate_database(settings)
        print(f"{settings.safe_database_url}: schema at revision {revision}")
    elif args.action == "backfill":
        described = _service().backfill_signatures()
        print(f"described {described} stored images for similar-photo search (pHash and features)")
    else:
        removed = _service().sweep_orphans()
        print(f"removed {len(removed)} orphaned blobs")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    """Stored photos like a photo (nothing is stored), best first."""
    target = args.photo
    data = fetch_image(target).data if is_url(target) else Path(target).read_bytes() if Path(target).is_file() else None
    if data is None:
        raise PicMetricError(f"no such file: {target}")
    found = _service().similar_to(load_target(args.photo).data, args.limit)
    if args.json:
        print(json.dumps([{"sha256": p.sha256, "similarity": p.similarity, "near_duplicate": p.near_duplicate}
                          for p in found], indent=2))  # fmt: skip
        return 0
    if not found:
        print("no stored photos yet")
    for photo in found:
        same = "  same photo, edited" if photo.near_duplicate else ""
        print(f"{photo.similarity:.3f}  {photo.sha256[:12]}  {photo.name or ''}{same}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from picmetric.interfaces.api.server import PROTOCOL

    with tempfile.TemporaryDirectory(prefix="picmetric-metrics-") as metrics_dir:
        if args.workers > 1:  # the workers write their metrics here, and /metrics adds them up
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "picmetric.interfaces.api:app_from_environment", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_level=args.log_level, proxy_headers=True, http=PROTOCOL,
        )  # fmt: skip
    return 0


def dashboard_dir() -> Path:
    """Where ``app.py``, ``pages/`` and ``.streamlit/`` are: the checkout this package runs from, or the copy an
    installed wheel puts under ``<prefix>/share/picmetric/dashboard``."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "app.py").is_file() and (checkout / "pages").is_dir():
        return checkout
    installed = Path(sysconfig.get_path("data")) / "share" / "picmetric" / "dashboard"
    if (installed / "app.py").is_file():
        return installed
    raise FileNotFoundError("the dashboard files are missing: reinstall picmetric with the [dashboard] extra")


def streamlit_flags(config: Path) -> list[str]:
    """The dashboard's ``.streamlit/config.toml`` as command-line flags, so it applies from any working directory
    (Streamlit reads that file from the current directory only)."""
    if not config.is_file():
        return []
    flags = []

    def walk(prefix: str, table: dict) -> None:  # nested tables ([theme.dark]) become --theme.dark.key=value
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flags.append(f"--{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")

    walk("", tomllib.loads(config.read_text()))
    return flags


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit dashboard (what ``./bootstrap.sh run`` starts, without the set-up)."""
    try:
        folder = dashboard_dir()
    except FileNotFoundError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "picmetric.interfaces.ui.serve", "run", str(folder / "app.py")]  # Streamlit's CLI
    command += streamlit_flags(folder / ".streamlit" / "config.toml")
    command += ["--server.port", str(args.port), "--server.address", args.host, *getattr(args, "streamlit_args", [])]
    os.execv(sys.executable, command)  # the dashboard takes over this process: signals reach Streamlit itself


DEFAULTS = AnalysisOptions()


def _option_flags(parser: argparse.ArgumentParser) -> None:
    """The analysis options, shared by ``analyze`` and ``ingest``."""
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of labels,objects,faces")
    parser.add_argument("--classifier", default=DEFAULTS.classifier, choices=sorted(CLASSIFIERS))
    parser.add_argument("--top-k", type=int, default=DEFAULTS.top_k)
    parser.add_argument(
        "--detector",
        default=DEFAULTS.detector,
        help=f"object detector: {DEFAULTS.detector} or one you added (models add)",
    )
    parser.add_argument("--detector-size", type=int, default=DEFAULTS.detector_size, choices=DETECTOR_SIZES)
    parser.add_argument("--min-confidence", type=float, default=DEFAULTS.min_confidence)
    parser.add_argument("--iou", type=float, default=DEFAULTS.iou_threshold)
    parser.add_argument(
        "--no-merge-synonyms", dest="merge_synonyms", action="store_false",
        help="NMS per class only (by default car/truck/bus, horse/cow/sheep and dog/cat suppress each other)",
    )  # fmt: skip
    parser.add_argument("--min-face-size", type=int, default=DEFAULTS.min_face_size)
    parser.add_argument(
        "--face-confidence", type=float, default=None, help="minimum face score (default: the face detector's own)"
    )
    parser.add_argument("--face-detector", default=DEFAULTS.face_detector, choices=list(FACE_DETECTORS))
    parser.add_argument(
        "--precision", default=DEFAULTS.precision, choices=PRECISIONS,
        help="int8: the quantized models that keep the float models' accuracy (EfficientNet-Lite2, YOLOv4-tiny 416)",
    )  # fmt: skip
    parser.add_argument("--format", default=DEFAULTS.render_format, choices=("webp", "png", "jpeg"))
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picmetric", description="What three neural networks see in a photo.")
    parser.add_argument("--version", action="version", version=f"picmetric {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="analyse image files, folders (recursively) or URLs")
    analyze.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
    analyze.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    analyze.add_argument("--out", metavar="DIR", help="write renders and JSON here")
    _option_flags(analyze)
    analyze.add_argument(
        "--store", action="store_true",
        help="keep the analysis (database + object store); with PICMETRIC_BROKER_URL, photos go to the workers",
    )  # fmt: skip
    analyze.set_defaults(func=cmd_analyze)

    ingest = commands.add_parser("ingest", help="queue every image under s3://bucket/prefix for analysis")
    ingest.add_argument("location", metavar="s3://bucket/prefix")
    ingest.add_argument("--no-follow", action="store_true", help="with a broker: queue and return at once")
    _option_flags(ingest)
    ingest.set_defaults(func=cmd_ingest)

    worker = commands.add_parser("worker", help="run a Celery worker for queued analyses (needs PICMETRIC_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, help="processes, each with its own models, one job each (default 1)")
    worker.add_argument("--threads", type=int, help="jobs one process runs at once over one model set (default 2)")
    worker.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    worker.set_defaults(func=cmd_worker)

    explain = commands.add_parser(
        "explain", help="where the classifier's evidence is (class activation map) and what its layers see"
    )
    explain.add_argument("photo", metavar="PATH_OR_URL")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder for the .npy map and the pictures")
    explain.add_argument("--classifier", default=DEFAULTS.classifier, choices=sorted(CLASSIFIERS))
    explain.set_defaults(func=cmd_explain)

    history = commands.add_parser("history", help="list stored analyses, newest first")
    history.add_argument("text", nargs="?", help="only those with this ImageNet label or object class")
    history.add_argument("--min-faces", type=int)
    history.add_argument("--source", choices=IMAGE_SOURCES)
    history.add_argument("--page", type=int, default=1)
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=cmd_history)

    reset = commands.add_parser("reset", help="delete every stored image and analysis")
    reset.add_argument("--yes", action="store_true", help="confirm")
    reset.set_defaults(func=cmd_reset)

    db = commands.add_parser("db", help="database maintenance")
    db.add_argument(
        "action", choices=("upgrade", "sweep", "backfill"),
        help="upgrade: apply migrations; sweep: delete orphaned blobs; backfill: describe stored images for "
        "similar-photo search",
    )  # fmt: skip
    db.set_defaults(func=cmd_db)

    similar = commands.add_parser("similar", help="stored photos like a photo, best first (nothing is stored)")
    similar.add_argument("photo", metavar="PATH_OR_URL")
    similar.add_argument("--limit", type=int, default=10, choices=range(1, 101), metavar="K")
    similar.add_argument("--json", action="store_true", help="a JSON list of sha256, similarity, near_duplicate")
    similar.set_defaults(func=cmd_similar)

    dashboard = commands.add_parser("dashboard", help="run the Streamlit dashboard")
    dashboard.add_argument("--host", default="localhost")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.epilog = "Any further flags are Streamlit's own (streamlit run --help), e.g. --server.headless true."
    dashboard.set_defaults(func=cmd_dashboard)

    serve = commands.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes; each loads the models once")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(func=cmd_serve)

    models = commands.add_parser("models", help="list, warm, add or remove models")
    models.set_defaults(func=cmd_models)
    model_actions = models.add_subparsers(dest="action")
    model_actions.add_parser("list", help="every classifier and detector, with its classes and source")
    model_actions.add_parser("warm", help="load (and on first use convert) every model")
    add = model_actions.add_parser("add", help="add your own object detector (Darknet or ONNX), converted once")
    add.add_argument("name", help="how analyses choose it: --detector NAME, detector=NAME")
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument("--darknet", nargs=2, metavar=("CFG", "WEIGHTS"), help="a Darknet cfg and its weights")
    given.add_argument("--onnx", metavar="FILE", help="an ONNX export (YOLOv5/v7, YOLOv8/v11, YOLOX layouts)")
    add.add_argument("--names", required=True, metavar="FILE", help="class names, one per line, in output order")
    add.add_argument("--layout", choices=ONNX_LAYOUTS, help="the ONNX output layout (found from its shape if unsaid)")
    remove = model_actions.add_parser("remove", help="remove a detector you added")
    remove.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "dashboard":
        args.streamlit_args = unknown  # e.g. --server.headless true: Streamlit's own flags
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 2
    except PicMetricError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # settings from the environment, .env or secrets
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"picmetric: configuration: {where}: {error['msg']}", file=sys.stderr)
        return 2
    except ArgumentError:
        print("picmetric: configuration: the database URL cannot be parsed (DATABASE_URL)", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"picmetric: the database could not be reached ({exc.__class__.__name__})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
