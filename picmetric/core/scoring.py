"""How right a model is: COCO's detection metrics (AP@[.50:.95], AP50, AP75, AP by size, AP per class) computed the
way pycocotools' COCOeval computes them, but vectorised in numpy, and the label metrics (top-1, top-5, per class,
confusion).

Why our own numpy: pycocotools loops in Python over every detection, ground-truth box and IoU threshold (about 20 s
for 5,000 photos x 30 boxes here); this matches its numbers to 1e-6 on the same predictions (tests/test_evaluate.py
runs pycocotools beside it) in a fraction of that (benchmarks/bench_scoring.py). The greedy matching keeps COCOeval's
rules: detections by score, each takes the unmatched ground truth of its class with the highest IoU at or above the
threshold, preferring boxes that are not ignored (crowd, or outside the size range) and, among equal IoUs, the last.

One matching at IoU 0.5 with every detection also answers precision and recall at any confidence threshold: matching
is greedy by score, so the detections above a threshold are matched exactly as when the weaker ones are dropped. That
is what lets the Evaluate page move its confidence slider without running a model or matching again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: COCOeval's parameters (pycocotools.cocoeval.Params, iouType="bbox")
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class BoxTable:
    """Boxes of many photos, one row each (supervision's style): the photo's index, class, ``xyxy`` in pixels, and
    a score (predictions) or crowd flag and area (ground truth: COCO's ``area`` field; the box's own by default)."""

    image: np.ndarray
    class_id: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray | None = None
    crowd: np.ndarray | None = None
    area: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        image: Sequence[int] | np.ndarray,
        class_id: Sequence[int] | np.ndarray,
        xyxy: Sequence[Sequence[float]] | np.ndarray,
        score: Sequence[float] | np.ndarray | None = None,
        crowd: Sequence[bool] | np.ndarray | None = None,
        area: Sequence[float] | np.ndarray | None = None,
    ) -> BoxTable:
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
        return cls(
            np.asarray(image, np.int64).reshape(-1), np.asarray(class_id, np.int64).reshape(-1), boxes,
            None if score is None else np.asarray(score, np.float64).reshape(-1),
            None if crowd is None else np.asarray(crowd, bool).reshape(-1),
            None if area is None else np.asarray(area, np.float64).reshape(-1),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.image)

    @property
    def scores(self) -> np.ndarray:
        """The predictions' scores (a truth table has none)."""
        if self.score is None:
            raise ValueError("predictions need scores")
        return self.score

    @property
    def box_area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])


@dataclass(frozen=True)
class Matching:
    """COCOeval's greedy matching at every IoU threshold and size range, kept for the metrics and the threshold."""

    truth: BoxTable
    predictions: BoxTable  # at most MAX_DETECTIONS per photo and class, by score
    n_images: int
    n_classes: int
    #: per size range: (thresholds x predictions) matched, ignored; (thresholds x truths) the score that matched it
    matched: dict[str, np.ndarray]
    ignored: dict[str, np.ndarray]
    truth_ignored: dict[str, np.ndarray]
    matched_by: np.ndarray  # (thresholds x truths) index of the prediction that matched it at "all", -1 if none
    rank: np.ndarray  # each prediction's place among its photo and class's, best first


def match(truth: BoxTable, predictions: BoxTable, n_images: int, n_classes: int) -> Matching:
    """Match predictions to ground truth as COCOeval.evaluate does, at every IoU threshold and size range."""
    scores = predictions.scores
    crowd = truth.crowd if truth.crowd is not None else np.zeros(len(truth), bool)
    truth_area = truth.area if truth.area is not None else truth.box_area
    # predictions per (photo, class), best first, ties in their given order; COCOeval keeps the best 100
    group_of_pred = predictions.image * n_classes + predictions.class_id
    order = np.lexsort((np.arange(len(predictions)), -scores, group_of_pred))
    sorted_groups = group_of_pred[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1] if len(order) else np.zeros(0, np.int64)
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[rank_sorted < MAX_DETECTIONS]
    rank_all = np.empty(len(order), np.int64)
    rank_all[order] = rank_sorted
    kept = np.sort(keep)
    preds = BoxTable(predictions.image[kept], predictions.class_id[kept], predictions.xyxy[kept], scores[kept])
    rank = rank_all[kept]
    pred_group = preds.image * n_classes + preds.class_id
    truth_group = truth.image * n_classes + truth.class_id

    pairs_pred, pairs_truth = _pairs(pred_group, truth_group)
    ious = _iou(preds.xyxy[pairs_pred], truth.xyxy[pairs_truth], crowd[pairs_truth])
    pred_area = preds.box_area
    by_rank = np.argsort(rank[pairs_pred], kind="stable")
    pair_rank = rank[pairs_pred][by_rank]
    rank_starts = np.searchsorted(pair_rank, np.arange(int(rank.max(initial=-1)) + 2))

    matched, ignored, truth_ignored = {}, {}, {}
    matched_by = np.full((len(IOU_THRESHOLDS), len(truth)), -1, np.int64)
    for name, (low, high) in AREA_RANGES.items():
        truth_ig = crowd | (truth_area < low) | (truth_area > high)
        # COCOeval's order within a photo and class: boxes it does not ignore first, then in their given order
        truth_order = np.lexsort((np.arange(len(truth)), truth_ig, truth_group))
        position = np.empty(len(truth), np.int64)
        position[truth_order] = np.arange(len(truth))
        taken = np.zeros((len(IOU_THRESHOLDS), len(truth)), bool)
        pred_matched = np.zeros((len(IOU_THRESHOLDS), len(preds)), bool)
        pred_ig = np.zeros((len(IOU_THRESHOLDS), len(preds)), bool)
        for r in range(len(rank_starts) - 1):
            at = by_rank[rank_starts[r] : rank_starts[r + 1]]  # pairs of this rank, grouped by prediction
            if not len(at):
                continue
            p, g, iou = pairs_pred[at], pairs_truth[at], ious[at]
            eligible = (iou[None, :] >= np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]) & (~taken[:, g] | crowd[g])
            preference = np.where(eligible, (~truth_ig[g]) * 2.0 + iou, -1.0)  # not ignored first, then IoU
            seg = np.r_[0, np.flatnonzero(np.diff(p)) + 1]
            best = np.maximum.reduceat(preference, seg, axis=1)
            owner = np.repeat(np.arange(len(seg)), np.diff(np.r_[seg, len(p)]))
            winner = eligible & (preference == best[:, owner])
            last = np.maximum.reduceat(np.where(winner, position[g][None, :], -1), seg, axis=1)  # ties: the last
            t_idx, s_idx = np.nonzero(last >= 0)
            chosen = truth_order[last[t_idx, s_idx]]
            pred_index = p[seg[s_idx]]
            taken[t_idx, chosen] = True
            pred_matched[t_idx, pred_index] = True
            pred_ig[t_idx, pred_index] = truth_ig[chosen]
            if name == "all":
                matched_by[t_idx, chosen] = pred_index
        outside = (pred_area < low) | (pred_area > high)
        pred_ig |= ~pred_matched & outside[None, :]
        matched[name], ignored[name], truth_ignored[name] = pred_matched, pred_ig, truth_ig
    return Matching(truth, preds, n_images, n_classes, matched, ignored, truth_ignored, matched_by, rank)


def _pairs(pred_group: np.ndarray, truth_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (prediction, truth) of the same photo and class, grouped by prediction."""
    truth_order = np.argsort(truth_group, kind="stable")
    sorted_truth = truth_group[truth_order]
    lo = np.searchsorted(sorted_truth, pred_group, "left")
    hi = np.searchsorted(sorted_truth, pred_group, "right")
    counts = hi - lo
    pred = np.repeat(np.arange(len(pred_group)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return pred, truth_order[np.repeat(lo, counts) + offsets]


def _iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of row-paired boxes; for a crowd box, the overlap over the prediction's area (pycocotools' rule)."""
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = np.where(crowd, area_a, area_a + area_b - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class DetectionMetrics:
    """COCO's numbers for one model on one dataset; -1 where nothing could be measured (no such boxes)."""

    map: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    mar_100: float
    ap_per_class: dict[int, float]  # AP@[.50:.95] of each class with ground truth
    ap50_per_class: dict[int, float]
    #: (classes x 101) precision at each recall point, IoU 0.5: the PR curves; -1 for a class without ground truth
    pr_curve: np.ndarray = field(repr=False)


def coco_metrics(matching: Matching) -> DetectionMetrics:
    """COCOeval.accumulate + summarize (maxDets 100): the twelve numbers' first seven, and AP per class."""
    n_t, n_k, n_r = len(IOU_THRESHOLDS), matching.n_classes, len(RECALL_POINTS)
    precision = {name: -np.ones((n_t, n_r, n_k)) for name in AREA_RANGES}
    recall = {name: -np.ones((n_t, n_k)) for name in AREA_RANGES}
    preds, truth = matching.predictions, matching.truth
    order = np.lexsort((matching.rank, preds.image, -preds.scores, preds.class_id))  # COCOeval's concatenation
    pred_class = preds.class_id[order]
    class_starts = np.searchsorted(pred_class, np.arange(n_k + 1))
    for name in AREA_RANGES:
        not_ignored_truth = np.bincount(truth.class_id[~matching.truth_ignored[name]], minlength=n_k)
        matched = matching.matched[name][:, order]
        ignored = matching.ignored[name][:, order]
        for k in range(n_k):
            if not_ignored_truth[k] == 0:
                continue
            lo, hi = class_starts[k], class_starts[k + 1]
            counted = ~ignored[:, lo:hi]
            tp = np.cumsum(matched[:, lo:hi] & counted, axis=1, dtype=np.float64)
            fp = np.cumsum(~matched[:, lo:hi] & counted, axis=1, dtype=np.float64)
            if tp.shape[1] == 0:
                recall[name][:, k] = 0
                precision[name][:, :, k] = 0
                continue
            rc = tp / not_ignored_truth[k]
            pr = tp / (fp + tp + np.spacing(1))
            recall[name][:, k] = rc[:, -1]
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # COCOeval's envelope, right to left
            for t in range(n_t):
                places = np.searchsorted(rc[t], RECALL_POINTS, side="left")
                inside = places < pr.shape[1]
                q = np.zeros(n_r)
                q[inside] = pr[t, places[inside]]
                precision[name][t, :, k] = q

    def mean(values: np.ndarray) -> float:
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    every = precision["all"]
    with_truth = [k for k in range(n_k) if (every[:, :, k] > -1).any()]
    return DetectionMetrics(
        map=mean(every), map50=mean(every[0]), map75=mean(every[5]),
        map_small=mean(precision["small"]), map_medium=mean(precision["medium"]), map_large=mean(precision["large"]),
        mar_100=mean(recall["all"]),
        ap_per_class={k: mean(every[:, :, k]) for k in with_truth},
        ap50_per_class={k: mean(every[0, :, k]) for k in with_truth},
        pr_curve=every[0].T.copy(),
    )  # fmt: skip


@dataclass(frozen=True)
class AtThreshold:
    """Precision and recall at one confidence threshold, IoU 0.5: what a user of the analysis threshold sees."""

    threshold: float
    true_positives: int
    false_positives: int
    missed: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 0.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.missed
        return self.true_positives / wanted if wanted else 0.0


def at_threshold(matching: Matching, threshold: float) -> AtThreshold:
    """TP, FP and missed boxes at ``threshold`` from the one matching (greedy by score: no rematch needed)."""
    shown, found = _shown_and_found(matching, threshold)
    matched, ignored = matching.matched["all"][0], matching.ignored["all"][0]
    return AtThreshold(
        threshold,
        int((matched & ~ignored & shown).sum()),
        int((~matched & ~ignored & shown).sum()),
        int((~matching.truth_ignored["all"] & ~found).sum()),
    )


def _shown_and_found(matching: Matching, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The predictions at or above ``threshold``, and the truths one of them matched (IoU 0.5)."""
    shown = matching.predictions.scores >= threshold
    hit = matching.matched_by[0]
    found = np.zeros(len(hit), bool)
    found[hit >= 0] = shown[hit[hit >= 0]]
    return shown, found


def false_and_missed(matching: Matching, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """At ``threshold`` and IoU 0.5: which predictions are false (no box of theirs) and which truths are missed,
    as boolean masks over ``matching.predictions`` and ``matching.truth``."""
    shown, found = _shown_and_found(matching, threshold)
    false = shown & ~matching.matched["all"][0] & ~matching.ignored["all"][0]
    return false, ~found & ~matching.truth_ignored["all"]


def confusion_matrix(
    truth: BoxTable, predictions: BoxTable, n_classes: int, threshold: float, iou: float = 0.5
) -> np.ndarray:
    """(classes + 1) x (classes + 1) counts, rows the truth and columns the prediction, the last of each being
    background: a missed box counts in the background column, a false one in the background row. Matching ignores
    class (supervision's ConfusionMatrix): each prediction, by score, takes the free truth it overlaps most."""
    matrix = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    shown = predictions.scores >= threshold
    pred_image, pred_class = predictions.image[shown], predictions.class_id[shown]
    pred_xyxy, pred_score = predictions.xyxy[shown], predictions.scores[shown]
    images = np.union1d(truth.image, pred_image)
    truth_by_image = np.argsort(truth.image, kind="stable")
    pred_by_image = np.lexsort((-pred_score, pred_image))
    truth_cut = (
        np.searchsorted(truth.image[truth_by_image], images, "left"),
        np.searchsorted(truth.image[truth_by_image], images, "right"),
    )
    pred_cut = (
        np.searchsorted(pred_image[pred_by_image], images, "left"),
        np.searchsorted(pred_image[pred_by_image], images, "right"),
    )
    for i in range(len(images)):
        t = truth_by_image[truth_cut[0][i] : truth_cut[1][i]]
        p = pred_by_image[pred_cut[0][i] : pred_cut[1][i]]
        free = np.ones(len(t), bool)
        if len(t) and len(p):
            a = np.repeat(pred_xyxy[p], len(t), axis=0)
            b = np.tile(truth.xyxy[t], (len(p), 1))
            overlaps = _iou(a, b, np.zeros(len(a), bool)).reshape(len(p), len(t))
        for j, pred in enumerate(p):
            if len(t):
                candidates = np.where(free, overlaps[j], -1.0)
                best = int(np.argmax(candidates))
                if candidates[best] >= iou:
                    free[best] = False
                    matrix[truth.class_id[t[best]], pred_class[pred]] += 1
                    continue
            matrix[n_classes, pred_class[pred]] += 1
        missed = truth.class_id[t[free]]
        np.add.at(matrix, (missed, np.full(len(missed), n_classes)), 1)
    return matrix


@dataclass(frozen=True)
class LabelMetrics:
    """How right a classifier's labels are: top-1 and top-5 accuracy, accuracy per class, and the confusion of
    true class (rows) and top-1 answer (columns, the last being "another class")."""

    top1: float
    top5: float
    per_class: dict[int, float]
    counts: dict[int, int]
    confusion: np.ndarray = field(repr=False)


def label_metrics(truth: np.ndarray, ranked: np.ndarray, classes: Sequence[int]) -> LabelMetrics:
    """``truth``: each photo's class; ``ranked``: (photos x k) the classifier's answers, best first (k >= 5 for
    top-5); ``classes``: the dataset's classes, in the order of the confusion matrix."""
    truth = np.asarray(truth, np.int64)
    ranked = np.asarray(ranked, np.int64).reshape(len(truth), -1)
    if not len(truth):
        return LabelMetrics(-1.0, -1.0, {}, {}, np.zeros((len(classes), len(classes) + 1), np.int64))
    top1 = ranked[:, 0] == truth
    top5 = (ranked[:, :5] == truth[:, None]).any(axis=1)
    where = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes) + 1), np.int64)
    for true, answer in zip(truth, ranked[:, 0], strict=True):
        confusion[where[int(true)], where.get(int(answer), len(classes))] += 1
    per_class = {int(c): float(top1[truth == c].mean()) for c in classes if (truth == c).any()}
    counts = {int(c): int((truth == c).sum()) for c in classes}
    return LabelMetrics(float(top1.mean()), float(top5.mean()), per_class, counts, confusion)
