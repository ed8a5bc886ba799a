"""How right each model is on a dataset: the photos are analysed as jobs (on workers when a broker is configured;
a photo analysed before with the same options is not analysed again), then scored against the truth.

The predictions kept with each analysis go down to the detector's candidate floor (0.05), below the analysis'
threshold, so the mAP sees the weak boxes too and a confidence slider can move precision and recall without
running a model again (``Evaluation.at``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from picmetric.core.catalog import CLASSIFIERS, DETECTOR, imagenet_vocabulary
from picmetric.core.options import AnalysisOptions
from picmetric.core.scoring import (
    AtThreshold,
    BoxTable,
    DetectionMetrics,
    LabelMetrics,
    Matching,
    at_threshold,
    coco_metrics,
    confusion_matrix,
    false_and_missed,
    label_metrics,
    match,
)
from picmetric.errors import PicMetricError
from picmetric.service.analyses import StoredAnalysis
from picmetric.service.datasets import DatasetService
from picmetric.service.jobs import JobInput, JobService, batch_counts
from picmetric.service.types import Dataset, DatasetPhoto

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelUnderTest:
    """A model to measure: a title for tables and the analysis options that run it."""

    title: str
    options: AnalysisOptions

    @property
    def task(self) -> str:
        return self.options.tasks[0]


@dataclass(frozen=True)
class PhotoErrors:
    """One photo's mistakes at a threshold: indices into ``Evaluation.predictions`` (false boxes) and
    ``Evaluation.truth`` (missed objects)."""

    index: int
    photo: DatasetPhoto
    false: list[int]
    missed: list[int]

    @property
    def count(self) -> int:
        return len(self.false) + len(self.missed)


@dataclass
class Evaluation:
    """One model scored on one dataset. Objects: COCO's metrics, and precision, recall, confusion and each photo's
    mistakes at any threshold (``at``); labels: top-1, top-5, per class, confusion."""

    dataset: Dataset
    model: ModelUnderTest
    photos: list[DatasetPhoto]
    matches: dict[str, str | None]  # each dataset category -> the model class it was matched to (None: none)
    failed: list[str]  # photos the model could not analyse (not scored)
    truth: BoxTable | None = None
    predictions: BoxTable | None = None
    matching: Matching | None = None
    detection: DetectionMetrics | None = None
    labels: LabelMetrics | None = None
    answers: list[list[str]] = field(default_factory=list)  # labels: each photo's top-5 names

    @property
    def threshold(self) -> float:
        """The analysis' own confidence threshold: where precision and recall are reported by default."""
        return self.model.options.min_confidence

    @property
    def categories(self) -> list[str]:
        return self.dataset.category_names

    @property
    def unmatched(self) -> list[str]:
        """Categories the model has no class for: not scored (listed, not fatal)."""
        return [c for c, m in self.matches.items() if m is None]

    def at(self, threshold: float) -> AtThreshold:
        assert self.matching is not None, "objects only"
        return at_threshold(self.matching, threshold)

    def confusion(self, threshold: float) -> np.ndarray:
        assert self.truth is not None and self.predictions is not None, "objects only"
        return confusion_matrix(self.truth, self.predictions, len(self.categories), threshold)

    def photo_errors(self, threshold: float) -> list[PhotoErrors]:
        """Each photo's false boxes and missed objects at ``threshold``, worst photo first."""
        assert self.matching is not None, "objects only"
        false, missed = false_and_missed(self.matching, threshold)
        kept = self.matching.predictions
        truth = self.matching.truth
        found = [
            PhotoErrors(
                i,
                photo,
                np.flatnonzero(false & (kept.image == i)).tolist(),
                np.flatnonzero(missed & (truth.image == i)).tolist(),
            )  # fmt: skip
            for i, photo in enumerate(self.photos)
        ]
        return sorted(found, key=lambda e: -e.count)

    def to_json(self, threshold: float | None = None) -> dict:
        """The report as plain values (``picmetric evaluate --json``, the API)."""
        report: dict = {
            "dataset": self.dataset.name, "task": self.model.task, "model": self.model.title,
            "options": self.model.options.to_dict(), "photos": len(self.photos), "failed": self.failed,
            "categories": {c: m for c, m in self.matches.items()}, "unmatched": self.unmatched,
        }  # fmt: skip
        if self.detection is not None and self.matching is not None:
            limit = self.threshold if threshold is None else threshold
            metrics, at = self.detection, self.at(limit)
            names = self.categories
            report |= {
                "map": _r(metrics.map), "map50": _r(metrics.map50), "map75": _r(metrics.map75),
                "map_small": _r(metrics.map_small), "map_medium": _r(metrics.map_medium),
                "map_large": _r(metrics.map_large), "mar_100": _r(metrics.mar_100),
                "ap_per_class": {names[k]: _r(v) for k, v in metrics.ap_per_class.items()},
                "ap50_per_class": {names[k]: _r(v) for k, v in metrics.ap50_per_class.items()},
                "threshold": limit, "precision": _r(at.precision), "recall": _r(at.recall),
                "true_positives": at.true_positives, "false_positives": at.false_positives, "missed": at.missed,
                "confusion": {"classes": [*names, "background"], "matrix": self.confusion(limit).tolist()},
                "per_photo": [
                    {
                        "file_name": e.photo.file_name,
                        "false": [self._box_json(self.matching.predictions, i) for i in e.false],
                        "missed": [self._box_json(self.matching.truth, i) for i in e.missed],
                    }
                    for e in sorted(self.photo_errors(limit), key=lambda e: e.index)
                ],
            }  # fmt: skip
        if self.labels is not None:
            metrics_l = self.labels
            names = self.categories
            report |= {
                "top1": _r(metrics_l.top1), "top5": _r(metrics_l.top5),
                "accuracy_per_class": {names[k]: _r(v) for k, v in metrics_l.per_class.items()},
                "confusion": {"classes": names, "answers": [*names, "another class"],
                              "matrix": metrics_l.confusion.tolist()},
                "per_photo": [
                    {"file_name": p.file_name, "label": p.label, "answers": a}
                    for p, a in zip(self.photos, self.answers, strict=True)
                ],
            }  # fmt: skip
        return report

    def _box_json(self, table: BoxTable, i: int) -> dict:
        box: dict[str, object] = {
            "class": self.categories[int(table.class_id[i])],
            "box": [round(float(v), 1) for v in table.xyxy[i]],
        }
        if table.score is not None:
            box["confidence"] = round(float(table.score[i]), 4)
        return box

    def coco_results(self) -> list[dict]:
        """The predictions in COCO's results format, with the dataset's own image and category ids."""
        assert self.predictions is not None, "objects only"
        ids = [i for i, _ in self.dataset.categories]
        found = self.predictions
        return [
            {
                "image_id": self.photos[int(found.image[j])].source_id,
                "category_id": ids[int(found.class_id[j])],
                "bbox": [round(float(v), 2) for v in _xywh(found.xyxy[j])],
                "score": round(float(found.scores[j]), 5),
            }
            for j in range(len(found))
        ]


def _r(value: float) -> float:
    return round(float(value), 4)


def _xywh(xyxy: np.ndarray) -> list[float]:
    return [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]


@dataclass(frozen=True)
class EvaluationRun:
    """Photos of a dataset being analysed for one model: follow it with ``EvaluationService.progress``."""

    dataset: str
    model: ModelUnderTest
    total: int
    batch_id: str | None  # None: every photo was analysed before


class EvaluationService:
    """Measure models on datasets: choices, runs as jobs, and the scores."""

    def __init__(self, jobs: JobService, datasets: DatasetService) -> None:
        self.jobs = jobs
        self.service = jobs.service
        self.datasets = datasets

    def models(self, task: str) -> list[ModelUnderTest]:
        """Every model that can be measured on a task: for objects the built-in detector in int8 and float32 and
        every added detector; for labels each classifier in float32, and in int8 where it has one."""
        if task == "objects":
            found = []
            for entry in self.service.detectors():
                if entry.family == "builtin":
                    found += [
                        ModelUnderTest(f"{entry.name} {p}", AnalysisOptions(tasks=("objects",), precision=p))
                        for p in ("int8", "float32")
                    ]
                else:
                    found.append(ModelUnderTest(entry.name, AnalysisOptions(tasks=("objects",), detector=entry.name)))
            return found
        found = []
        for key, spec in CLASSIFIERS.items():
            for precision in ("int8", "float32") if spec.int8 else ("float32",):
                options = AnalysisOptions(tasks=("labels",), classifier=key, precision=precision)
                found.append(ModelUnderTest(f"{key} {precision}", options))
        return found

    def model(self, task: str, *, detector: str | None = None, classifier: str | None = None,
              precision: str = "int8") -> ModelUnderTest:  # fmt: skip
        """The model a CLI or API call names (the default detector or classifier when none is named)."""
        if task == "objects":
            name = detector or DETECTOR.key
            self.service.detector(name)  # refuses a detector that is not here
            options = AnalysisOptions(tasks=("objects",), detector=name, precision=precision)
            return ModelUnderTest(f"{name} {options.detector_precision}", options)
        options = AnalysisOptions(
            tasks=("labels",), precision=precision, **({"classifier": classifier} if classifier else {})
        )
        return ModelUnderTest(f"{options.classifier} {options.classifier_precision}", options)

    # -- running ---------------------------------------------------------------------------------------------------

    def start(self, dataset_name: str, model: ModelUnderTest) -> EvaluationRun:
        """Queue the dataset's photos that this model has not analysed yet (one batch of jobs)."""
        dataset = self.datasets.require(dataset_name)
        if model.task != dataset.task:
            raise PicMetricError(f"{dataset.name} has {dataset.task}; {model.title} finds {model.task}")
        photos = self.datasets.photos(dataset.name)
        waiting = [p for p in photos if self._stored(p, model) is None]
        if not waiting:
            return EvaluationRun(dataset.name, model, len(photos), None)
        inputs = []
        for photo in waiting:
            picture = self.service.image(photo.image.sha256)
            if picture is None:
                raise PicMetricError(f"{photo.file_name} of {dataset.name} is no longer stored")
            inputs.append(JobInput(source="dataset", name=photo.file_name, data=picture.content))
        batch_id, _ = self.jobs.submit(inputs, model.options, batch=True)
        return EvaluationRun(dataset.name, model, len(photos), batch_id)

    def progress(self, run: EvaluationRun) -> tuple[int, int]:
        """(photos analysed, photos in all): those analysed before count as done."""
        if run.batch_id is None:
            return run.total, run.total
        jobs = self.jobs.batch(run.batch_id) or []
        counts = batch_counts(jobs)
        return run.total - len(jobs) + counts["done"] + counts["failed"], run.total

    def finish(self, run: EvaluationRun, on_progress: Progress | None = None, poll_s: float = 0.1) -> Evaluation:
        """Wait for the run's photos, then score them."""
        while True:
            done, total = self.progress(run)
            if on_progress:
                on_progress(done, total)
            if done >= total:
                break
            time.sleep(poll_s)
        return self.score(run.dataset, run.model)

    def evaluate(self, dataset_name: str, model: ModelUnderTest, on_progress: Progress | None = None) -> Evaluation:
        """Analyse what was not analysed yet and score: one call for the CLI and tests."""
        return self.finish(self.start(dataset_name, model), on_progress)

    # -- scoring ---------------------------------------------------------------------------------------------------

    def score(self, dataset_name: str, model: ModelUnderTest) -> Evaluation:
        """Score the stored analyses of the dataset's photos (a photo without one is reported as failed)."""
        dataset = self.datasets.require(dataset_name)
        photos = self.datasets.photos(dataset.name)
        stored = [self._stored(p, model) for p in photos]
        failed = [p.file_name for p, s in zip(photos, stored, strict=True) if s is None]
        if model.task == "objects":
            return self._score_objects(dataset, model, photos, stored, failed)
        return self._score_labels(dataset, model, photos, stored, failed)

    def _stored(self, photo: DatasetPhoto, model: ModelUnderTest) -> StoredAnalysis | None:
        found = self.service.get(photo.image.sha256, model.options)
        return found if found is not None and found.status == "done" else None

    def _score_objects(
        self, dataset: Dataset, model: ModelUnderTest, photos: list[DatasetPhoto],
        stored: list[StoredAnalysis | None], failed: list[str],
    ) -> Evaluation:  # fmt: skip
        classes = self.service.detector(model.options.detector).classes
        matched = self.datasets.matches(dataset, [[name] for name in classes])
        category_of_class: dict[int, int] = {}  # a class two categories mean is scored as the first of them
        for category, class_index in enumerate(matched.values()):
            if class_index is not None:
                category_of_class.setdefault(class_index, category)
        scored = {i for i, m in enumerate(matched.values()) if m is not None}
        truth_rows = [
            (i, int(box[0]), box[1:5], bool(box[5]), box[6])
            for i, photo in enumerate(photos) if stored[i] is not None
            for box in photo.boxes if int(box[0]) in scored
        ]  # fmt: skip
        pred_rows = []
        for i, analysis in enumerate(stored):
            if analysis is None or analysis.analysis.detections is None:
                continue
            found = analysis.analysis.objects_from(analysis.analysis.floor("objects"))
            assert found is not None
            for xyxy, score, class_id in zip(found.xyxy, found.confidence, found.class_id, strict=True):
                if int(class_id) in category_of_class:
                    pred_rows.append((i, category_of_class[int(class_id)], xyxy, float(score)))
        truth = BoxTable.of(
            [r[0] for r in truth_rows], [r[1] for r in truth_rows], [r[2] for r in truth_rows],
            crowd=[r[3] for r in truth_rows],
            area=[r[4] if r[4] is not None else (r[2][2] - r[2][0]) * (r[2][3] - r[2][1]) for r in truth_rows],
        )  # fmt: skip
        predictions = BoxTable.of(
            [r[0] for r in pred_rows], [r[1] for r in pred_rows], [r[2] for r in pred_rows],
            score=[r[3] for r in pred_rows],
        )  # fmt: skip
        matching = match(truth, predictions, len(photos), len(dataset.categories))
        return Evaluation(
            dataset, model, photos, {c: classes[m] if m is not None else None for c, m in matched.items()}, failed,
            truth=truth, predictions=matching.predictions, matching=matching, detection=coco_metrics(matching),
        )  # fmt: skip

    def _score_labels(
        self, dataset: Dataset, model: ModelUnderTest, photos: list[DatasetPhoto],
        stored: list[StoredAnalysis | None], failed: list[str],
    ) -> Evaluation:  # fmt: skip
        vocabulary = imagenet_vocabulary()
        matched = self.datasets.matches(dataset, vocabulary)
        index = {c: i for i, c in enumerate(dataset.category_names)}
        category_of_class = {m: index[c] for c, m in matched.items() if m is not None}
        truth, ranked, answers, kept = [], [], [], []
        for photo, analysis in zip(photos, stored, strict=True):
            classification = analysis.analysis.classification if analysis is not None else None
            if classification is None or matched.get(photo.label or "") is None:
                continue
            top = [int(c) for c in classification.class_id[:5]]
            truth.append(index[photo.label or ""])
            ranked.append([category_of_class.get(c, -1) for c in top] + [-1] * (5 - len(top)))
            answers.append(list(classification.names[:5]))
            kept.append(photo)
        return Evaluation(
            dataset, model, kept, {c: vocabulary[m][0] if m is not None else None for c, m in matched.items()},
            failed, labels=label_metrics(np.array(truth), np.array(ranked).reshape(len(truth), 5),
                                         [index[c] for c in dataset.category_names]),
            answers=answers,
        )  # fmt: skip
