"""Datasets and evaluations in the v1 API: the same as ``picmetric datasets`` and ``picmetric evaluate``."""

from __future__ import annotations

import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from picmetric.core.catalog import CLASSIFIERS, PRECISIONS
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.interfaces.api.common import ApiSettings, Datasets, Evaluations
from picmetric.interfaces.api.errors import Problem, error_responses
from picmetric.service.types import Dataset

router = APIRouter(prefix="/api/v1", tags=["evaluate"], responses=error_responses(Problem))
DatasetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class DatasetCategory(BaseModel):
    id: int  # the dataset's own id
    name: str


class DatasetItem(BaseModel):
    name: str
    task: Literal["objects", "labels"]
    format: str  # coco | yolo | voc | imagefolder | board
    photos: int
    categories: list[DatasetCategory]
    synonyms: dict[str, str]  # dataset category -> the model class it means
    notes: list[str]  # what the import noticed (not fatal)
    created_at: datetime

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetItem:
        return cls(
            name=dataset.name, task=dataset.task, format=dataset.format, photos=dataset.photo_count,  # type: ignore[arg-type]
            categories=[DatasetCategory(id=i, name=n) for i, n in dataset.categories], synonyms=dataset.synonyms,
            notes=dataset.notes, created_at=dataset.created_at,
        )  # fmt: skip


class SynonymsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    synonyms: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=64)]] = Field(max_length=1000)


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: DatasetName
    detector: Annotated[str | None, Field(max_length=64, description="objects: the built-in one unless named")] = None
    classifier: Annotated[Literal[tuple(CLASSIFIERS)] | None, Field(description="labels")] = None  # type: ignore[valid-type]
    precision: Literal[tuple(PRECISIONS)] = "int8"  # type: ignore[valid-type]
    threshold: Annotated[float | None, Field(ge=0, le=1, description="precision and recall here (default 0.25)")] = None


class EvaluationAnswer(BaseModel):
    """``picmetric evaluate --json``: for objects map, map50, map75, map_small|medium|large, mar_100, AP per class,
    precision and recall at the threshold, a confusion matrix and each photo's false and missed boxes; for labels
    top1, top5, accuracy per class and a confusion matrix."""

    model_config = ConfigDict(extra="allow")
    dataset: str
    task: str
    model: str
    photos: int
    unmatched: list[str]  # categories the model has no class for: not scored
    failed: list[str]  # photos the model could not analyse


@router.get("/datasets", summary="The datasets kept here", response_model=list[DatasetItem])
async def list_datasets(datasets: Datasets) -> list[DatasetItem]:
    return [DatasetItem.of(d) for d in await run_in_threadpool(datasets.kept)]


@router.post(
    "/datasets",
    status_code=201,
    summary="Import a dataset: a zip of COCO, YOLO, Pascal VOC or ImageFolder (multipart 'file', 'name')",
    response_model=DatasetItem,
)
async def add_dataset(
    datasets: Datasets, settings: ApiSettings, name: Annotated[DatasetName, Form()], file: Annotated[UploadFile, File()]
) -> DatasetItem:
    with tempfile.TemporaryDirectory(prefix="picmetric-dataset-") as folder:
        path = Path(folder, "dataset.zip")
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(1024 * 1024):
                size += len(chunk)
                if size > settings.max_batch_bytes:
                    raise PicMetricError(f"the zip is larger than {settings.max_batch_bytes / 1e6:.0f} MB")
                out.write(chunk)
        if size == 0:
            raise PicMetricError("the file is empty (0 bytes)")
        if not await run_in_threadpool(_is_zip, path):
            raise PicMetricError("send the dataset as a zip file")
        return DatasetItem.of(await run_in_threadpool(datasets.add, name, path))


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


@router.get("/datasets/{name}", summary="One dataset", response_model=DatasetItem)
async def get_dataset(datasets: Datasets, name: str) -> DatasetItem:
    found = await run_in_threadpool(datasets.get, name)
    if found is None:
        raise NotFoundError(f"no dataset named {name[:64]!r}")
    return DatasetItem.of(found)


@router.put(
    "/datasets/{name}/synonyms",
    summary="Which model class each dataset category means, where the names differ",
    response_model=DatasetItem,
)
async def set_synonyms(datasets: Datasets, name: str, body: SynonymsBody) -> DatasetItem:
    if await run_in_threadpool(datasets.get, name) is None:
        raise NotFoundError(f"no dataset named {name[:64]!r}")
    return DatasetItem.of(await run_in_threadpool(datasets.set_synonyms, name, body.synonyms))


@router.delete(
    "/datasets/{name}", status_code=204, summary="Remove a dataset and the photos nothing else keeps (admin token)"
)
async def remove_dataset(datasets: Datasets, name: str) -> Response:
    if not await run_in_threadpool(datasets.remove, name):
        raise NotFoundError(f"no dataset named {name[:64]!r}")
    return Response(status_code=204)


@router.post(
    "/evaluations",
    summary="Measure a model on a dataset (its photos are analysed as jobs, then scored)",
    response_model=EvaluationAnswer,
)
async def evaluate(evaluations: Evaluations, body: EvaluationRequest) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        dataset = evaluations.datasets.require(body.dataset)
        model = evaluations.model(
            dataset.task, detector=body.detector, classifier=body.classifier, precision=body.precision
        )
        return evaluations.evaluate(dataset.name, model).to_json(body.threshold)

    return await run_in_threadpool(run)
