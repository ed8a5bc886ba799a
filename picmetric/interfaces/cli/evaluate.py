"""The commands that measure models: ``picmetric datasets add|list|remove|synonyms`` and ``picmetric evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from picmetric.core.catalog import CLASSIFIERS, PRECISIONS
from picmetric.interfaces.cli.common import UsageError, open_jobs, open_service
from picmetric.service.datasets import DatasetService
from picmetric.service.evaluation import Evaluation, EvaluationService
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    datasets = commands.add_parser("datasets", help="labelled photos to measure models on")
    actions = datasets.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="import a COCO, YOLO, Pascal VOC or ImageFolder dataset (a folder or a zip)")
    add.add_argument("name")
    add.add_argument("path", type=Path, metavar="DIR|ZIP")
    add.set_defaults(func=cmd_datasets_add)
    listing = actions.add_parser("list", help="the datasets kept here")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_datasets_list)
    remove = actions.add_parser("remove", help="remove a dataset (and its photos that nothing else keeps)")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_datasets_remove)
    synonyms = actions.add_parser("synonyms", help="say which model class a dataset category means: cat=class")
    synonyms.add_argument("name")
    synonyms.add_argument("pairs", nargs="*", metavar="CATEGORY=CLASS", help="none: clear the table")
    synonyms.set_defaults(func=cmd_datasets_synonyms)

    evaluate = commands.add_parser("evaluate", help="measure how right a model is on a dataset")
    evaluate.add_argument("dataset", metavar="DIR|ZIP|NAME", help="a kept dataset's name, or a folder or zip")
    evaluate.add_argument("--json", action="store_true", help="the full report as JSON")
    evaluate.add_argument("--detector", help="an object detector (the built-in one unless named)")
    evaluate.add_argument("--classifier", choices=tuple(CLASSIFIERS), help="for a labels dataset")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="int8")
    evaluate.add_argument("--threshold", type=float, help="precision and recall at this confidence (default: 0.25)")
    evaluate.add_argument("--predictions-out", type=Path, metavar="FILE", help="the predictions, COCO results format")
    evaluate.set_defaults(func=cmd_evaluate)


def _services(settings: Settings) -> tuple[DatasetService, EvaluationService]:
    service = open_service(settings)
    datasets = DatasetService(service)
    return datasets, EvaluationService(open_jobs(service), datasets)


def _progress(what: str):
    def report(done: int, total: int) -> None:
        print(f"\r{what}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return report


def cmd_datasets_add(args: argparse.Namespace, settings: Settings) -> int:
    datasets, _ = _services(settings)
    found = datasets.add(args.name, args.path, _progress(f"checking {args.path.name}"))
    print(f"{found.name}: {found.photo_count} photos, {found.task} ({found.format}), categories: "
          f"{', '.join(found.category_names[:20])}{' …' if len(found.categories) > 20 else ''}")  # fmt: skip
    for note in found.notes:
        print(f"  note: {note}")
    return 0


def cmd_datasets_list(args: argparse.Namespace, settings: Settings) -> int:
    datasets, _ = _services(settings)
    found = datasets.kept()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": d.name,
                        "task": d.task,
                        "format": d.format,
                        "photos": d.photo_count,
                        "categories": d.category_names,
                        "synonyms": d.synonyms,
                    }
                    for d in found
                ],
                indent=2,
            )
        )
    else:
        for d in found:
            print(f"{d.name:24} {d.task:8} {d.format:12} {d.photo_count:6} photos  {len(d.categories)} categories")
        if not found:
            print("no datasets yet: picmetric datasets add NAME DIR|ZIP (sample-objects and sample-labels ship)")
    return 0


def cmd_datasets_remove(args: argparse.Namespace, settings: Settings) -> int:
    datasets, _ = _services(settings)
    if not datasets.remove(args.name):
        print(f"picmetric: no dataset named {args.name!r}", file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


def cmd_datasets_synonyms(args: argparse.Namespace, settings: Settings) -> int:
    datasets, _ = _services(settings)
    table = {}
    for pair in args.pairs:
        category, sep, name = pair.partition("=")
        if not sep:
            raise UsageError(f"{pair!r}: write CATEGORY=CLASS")
        table[category] = name
    found = datasets.set_synonyms(args.name, table)
    print(json.dumps(found.synonyms, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    datasets, evaluation = _services(settings)
    name = args.dataset
    if Path(name).exists():  # a folder or zip: imported once under its own name, then measured like any other
        path = Path(name)
        name = path.stem if path.is_file() else path.resolve().name
        if datasets.get(name) is None:
            datasets.add(name, path, _progress(f"checking {path.name}"))
    dataset = datasets.require(name)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError("--threshold is between 0 and 1")
    model = evaluation.model(dataset.task, detector=args.detector, classifier=args.classifier, precision=args.precision)
    report = evaluation.evaluate(dataset.name, model, _progress(f"{model.title} on {dataset.name}"))
    if args.predictions_out:
        if dataset.task != "objects":
            raise UsageError("--predictions-out is for object datasets (COCO results format)")
        args.predictions_out.write_text(json.dumps(report.coco_results()))
    if args.json:
        print(json.dumps(report.to_json(args.threshold), indent=2))
    else:
        print(_summary(report, args.threshold))
    return 0


def _summary(report: Evaluation, threshold: float | None) -> str:
    lines = [f"{report.model.title} on {report.dataset.name} ({len(report.photos)} photos)"]
    data = report.to_json(threshold)
    if report.detection is not None:
        lines.append(
            f"  mAP {data['map']:.3f}  mAP50 {data['map50']:.3f}  mAP75 {data['map75']:.3f}  "
            f"small {data['map_small']:.3f}  medium {data['map_medium']:.3f}  large {data['map_large']:.3f}"
        )
        lines.append(
            f"  at confidence {data['threshold']:g}: precision {data['precision']:.3f}, recall {data['recall']:.3f} "
            f"({data['true_positives']} right, {data['false_positives']} false, {data['missed']} missed)"
        )
        for name, ap in sorted(data["ap_per_class"].items(), key=lambda item: item[1]):
            lines.append(f"    AP {ap:.3f}  {name}")
    else:
        lines.append(f"  top-1 {data['top1']:.3f}  top-5 {data['top5']:.3f}")
    if report.unmatched:
        lines.append(f"  not scored (the model has no such class): {', '.join(report.unmatched)}")
    if report.failed:
        lines.append(f"  not analysed: {', '.join(report.failed[:10])}")
    return "\n".join(lines)
