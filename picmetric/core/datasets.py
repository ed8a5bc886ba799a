"""Labelled photos to measure a model on: read from a folder or a zip in COCO JSON, YOLO, Pascal VOC (boxes) or
ImageFolder (one folder per ImageNet class) form, checked, and nothing read from outside the dataset.

Why a file tree of our own: a dataset's names (COCO's ``file_name``, a VOC ``<filename>``) come from whoever made
it. Every file is listed first (a folder walked without following links out of it, or a zip's members) and a name
is only ever looked up in that list, so ``../../etc/passwd`` or ``/etc/passwd`` names nothing. A zip is read member
by member with a cap on what each may inflate to, whatever its header claims (a zip bomb stops at the cap)."""

from __future__ import annotations

import json
import os
import posixpath
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml

from picmetric.core.decoding import IMAGE_SUFFIXES
from picmetric.errors import PicMetricError

MAX_FILES = 50_000
MAX_PHOTOS = 10_000
MAX_ANNOTATIONS = 50_000
MAX_PHOTO_BYTES = 30 * 1024 * 1024
MAX_TEXT_BYTES = 64 * 1024 * 1024  # an annotations file
MAX_TOTAL_BYTES = 4 * 1024**3  # everything a zip may inflate to
MAX_CATEGORY_CHARS = 64

Task = Literal["objects", "labels"]


class DatasetError(PicMetricError):
    """A dataset that cannot be read as given: the message names the file and what is wrong."""


@dataclass(frozen=True)
class TruthBox:
    """One labelled object: its category as the dataset names it, and its box ``xyxy`` in pixels, or as fractions of
    the photo's size (YOLO) until the photo's size is known (``in_pixels``)."""

    category: str
    xyxy: tuple[float, float, float, float]
    crowd: bool = False
    area: float | None = None  # COCO's own area field (used for the size ranges, as COCOeval does)
    fractions: bool = False

    def in_pixels(self, width: int, height: int) -> TruthBox:
        if not self.fractions:
            return self
        x1, y1, x2, y2 = self.xyxy
        return TruthBox(self.category, (x1 * width, y1 * height, x2 * width, y2 * height), self.crowd, self.area)


@dataclass(frozen=True)
class DatasetPhoto:
    """A photo of a dataset: its name inside the dataset, its bytes when asked, and its truth (boxes or a label)."""

    file_name: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    source_id: int = 0  # the dataset's own id for it (COCO's image id; else its place, from 1)
    boxes: tuple[TruthBox, ...] = ()
    label: str | None = None


@dataclass
class DatasetFiles:
    """A dataset as read: its task, format, photos, categories (the dataset's own id and name, in its order) and
    what was noticed but not fatal (an unknown category id, a photo without annotations)."""

    task: Task
    format: str
    photos: list[DatasetPhoto]
    categories: list[tuple[int, str]]
    notes: list[str] = field(default_factory=list)


def check_box(box: TruthBox, width: int, height: int, where: str) -> TruthBox:
    """A box in pixels inside its photo, or DatasetError saying what is wrong with it; a box crossing the edge by
    rounding (up to 1 % of the photo) is clipped."""
    pixels = box.in_pixels(width, height)
    x1, y1, x2, y2 = pixels.xyxy
    if not all(map(_finite, pixels.xyxy)) or x2 <= x1 or y2 <= y1:
        raise DatasetError(f"{where}: a {box.category} box has no size ({_box_text(pixels.xyxy)})")
    slack_x, slack_y = 0.01 * width, 0.01 * height
    if x1 < -slack_x or y1 < -slack_y or x2 > width + slack_x or y2 > height + slack_y:
        raise DatasetError(
            f"{where}: a {box.category} box ({_box_text(pixels.xyxy)}) lies outside the {width}x{height} photo"
        )
    clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    return TruthBox(box.category, clipped, box.crowd, box.area)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _box_text(xyxy: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in xyxy)


# -- the file tree: a folder or a zip, every name checked ---------------------------------------------------------


class FileTree:
    """The files of a dataset by their relative POSIX path; nothing outside can be named."""

    def __init__(self, sizes: dict[str, int], opener: Callable[[str, int], bytes], origin: str) -> None:
        self.sizes = sizes
        self._open = opener
        self.origin = origin

    @classmethod
    def of(cls, path: Path) -> FileTree:
        if path.is_dir():
            return cls._folder(path)
        if path.is_file() and zipfile.is_zipfile(path):
            return cls._zip(path)
        if not path.exists():
            raise DatasetError(f"{path} does not exist")
        raise DatasetError(f"{path.name} is neither a folder nor a zip file")

    @classmethod
    def _folder(cls, root: Path) -> FileTree:
        root = root.resolve()
        sizes: dict[str, int] = {}
        for folder, dirs, files in os.walk(root):  # links to folders are not followed
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder, name)
                if name.startswith(".") or not path.resolve().is_relative_to(root) or not path.is_file():
                    continue  # a link out of the dataset, or something not a file, is not part of it
                sizes[path.relative_to(root).as_posix()] = path.stat().st_size
                if len(sizes) > MAX_FILES:
                    raise DatasetError(f"{root.name} holds more than {MAX_FILES:,} files")

        def read(name: str, limit: int) -> bytes:
            with open(root / name, "rb") as handle:
                data = handle.read(limit + 1)
            if len(data) > limit:
                raise DatasetError(f"{name} is larger than {limit / 1e6:.0f} MB")
            return data

        return cls(sizes, read, root.name)

    @classmethod
    def _zip(cls, path: Path) -> FileTree:
        try:
            archive = zipfile.ZipFile(path)
            members = [m for m in archive.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DatasetError(f"{path.name} is not a readable zip ({exc})") from None
        if len(members) > MAX_FILES:
            raise DatasetError(f"{path.name} holds more than {MAX_FILES:,} files")
        sizes: dict[str, int] = {}
        for member in members:
            name = safe_name(member.filename)
            if name is None or name.split("/")[-1].startswith(".") or name.startswith("__MACOSX/"):
                continue
            sizes[name] = member.file_size
        if sum(sizes.values()) > MAX_TOTAL_BYTES:
            raise DatasetError(f"{path.name} inflates to more than {MAX_TOTAL_BYTES / 1024**3:.0f} GB")
        by_name = {safe_name(m.filename): m for m in members}
        inflated = [0]

        def read(name: str, limit: int) -> bytes:
            try:
                with archive.open(by_name[name]) as handle:  # the header's size is not trusted: read to the cap
                    data = handle.read(limit + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise DatasetError(f"{name} in {path.name} cannot be read ({exc})") from None
            if len(data) > limit:
                raise DatasetError(f"{name} in {path.name} inflates to more than {limit / 1e6:.0f} MB")
            inflated[0] += len(data)
            if inflated[0] > MAX_TOTAL_BYTES:
                raise DatasetError(f"{path.name} inflates to more than {MAX_TOTAL_BYTES / 1024**3:.0f} GB")
            return data

        return cls(sizes, read, path.stem)

    def read(self, name: str, limit: int) -> bytes:
        return self._open(name, limit)

    def text(self, name: str) -> str:
        try:
            return self.read(name, MAX_TEXT_BYTES).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DatasetError(f"{name} is not UTF-8 text") from None

    def photo(self, name: str) -> Callable[[], bytes]:
        return lambda: self.read(name, MAX_PHOTO_BYTES)

    def find(self, name: str, *folders: str) -> str | None:
        """The file a dataset names, tried relative to each of ``folders``; None when it names nothing inside."""
        clean = safe_name(name)
        if clean is None:
            return None
        for folder in folders or ("",):
            candidate = posixpath.join(folder, clean) if folder else clean
            if candidate in self.sizes:
                return candidate
        return None


def safe_name(name: str) -> str | None:
    """A relative POSIX path with no way out (no ``..``, no absolute path, no drive, no backslash, no control
    characters), normalised; None for anything else."""
    if not name or "\\" in name or any(ord(c) < 32 for c in name) or re.match(r"^[A-Za-z]:", name):
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in name.split("/") if part != "."):
        return None
    parts = [p for p in path.parts if p != "."]
    return "/".join(parts) if parts else None


# -- the formats --------------------------------------------------------------------------------------------------


def read_dataset(path: Path) -> DatasetFiles:
    """The dataset in the folder or zip at ``path``, in whichever format it is (COCO, YOLO, VOC, ImageFolder)."""
    tree = FileTree.of(path)
    if not tree.sizes:
        raise DatasetError(f"{path.name} holds no files")
    for reader in (_coco, _yolo, _voc, _image_folder):
        found = reader(tree)
        if found is not None:
            if not found.photos:
                raise DatasetError(f"{path.name}: the {found.format} dataset names no photos")
            if len(found.photos) > MAX_PHOTOS:
                raise DatasetError(f"{path.name} has {len(found.photos):,} photos; at most {MAX_PHOTOS:,}")
            return found
    raise DatasetError(
        f"{path.name} is not a dataset PicMetric reads: COCO (a .json with images, annotations, categories), YOLO "
        "(images/ and labels/ with data.yaml or a names file), Pascal VOC (.xml) or ImageFolder (a folder per class)"
    )


def _coco(tree: FileTree) -> DatasetFiles | None:
    candidates = [n for n in tree.sizes if n.endswith(".json") and n.count("/") <= 1]
    for name in sorted(candidates, key=lambda n: (n.count("/"), n)):
        text = tree.text(name)  # up to 64 MB: read once
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            if _looks_coco(text):
                raise DatasetError(f"{name} is not valid JSON: {exc}") from None
            continue
        if isinstance(document, dict) and "images" in document and "annotations" in document:
            return coco_document(tree, name, document)
    return None


def _looks_coco(text: str) -> bool:
    return '"images"' in text[:100_000] and '"annotations"' in text


def coco_document(tree: FileTree, name: str, document: dict) -> DatasetFiles:
    """A COCO document's photos (looked up in ``tree``) and boxes."""
    images, annotations = document.get("images"), document.get("annotations")
    categories = document.get("categories", [])
    if not isinstance(images, list) or not isinstance(annotations, list) or not isinstance(categories, list):
        raise DatasetError(f"{name}: images, annotations and categories must be lists")
    if len(annotations) > MAX_ANNOTATIONS:
        raise DatasetError(f"{name} has {len(annotations):,} annotations; at most {MAX_ANNOTATIONS:,}")
    if len(images) > MAX_PHOTOS:
        raise DatasetError(f"{name} has {len(images):,} photos; at most {MAX_PHOTOS:,}")
    category_names: dict[int, str] = {}
    for category in categories:
        if not isinstance(category, dict) or not isinstance(category.get("id"), int):
            raise DatasetError(f"{name}: each category needs an integer id and a name")
        category_names[category["id"]] = _category(category.get("name"), name)
    base = posixpath.dirname(name)
    folders = [base, posixpath.join(base, "images"), "images", "", posixpath.dirname(base)]
    by_id: dict[int, dict] = {}
    missing: list[str] = []
    for image in images:
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("id"), int)
            or not isinstance(image.get("file_name"), str)
        ):
            raise DatasetError(f"{name}: each image needs an integer id and a file_name")
        found = tree.find(image["file_name"], *dict.fromkeys(folders))
        if found is None:
            missing.append(image["file_name"][:80])
        by_id[image["id"]] = {"file": found, "boxes": [], "id": image["id"]}
    if missing:
        raise DatasetError(
            f"{name} names {len(missing)} photo(s) not in the dataset: {', '.join(missing[:5])}"
            + (" …" if len(missing) > 5 else "")
        )
    unknown: dict[object, int] = {}
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise DatasetError(f"{name}: each annotation must be an object")
        where = f"{name}, annotation {str(annotation.get('id', '?'))[:20]}"
        entry = by_id.get(annotation.get("image_id"))  # type: ignore[arg-type]
        if entry is None:
            raise DatasetError(f"{where} is of image {str(annotation.get('image_id'))[:20]}, which is not listed")
        category = annotation.get("category_id")
        if category not in category_names:
            unknown[category] = unknown.get(category, 0) + 1
            continue
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            raise DatasetError(f"{where}: bbox must be four numbers [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        area = annotation.get("area")
        entry["boxes"].append(
            TruthBox(
                category_names[category],
                (x, y, x + w, y + h),
                bool(annotation.get("iscrowd", 0)),
                float(area) if isinstance(area, int | float) and _number(area) else None,
            )
        )
    notes = [
        f"{count} annotation(s) of category id {str(category)[:20]}, which {name} does not list, were left out"
        for category, count in unknown.items()
    ]
    photos = [
        DatasetPhoto(entry["file"], tree.photo(entry["file"]), entry["id"], tuple(entry["boxes"]))
        for entry in by_id.values()
    ]
    first_id: dict[str, int] = {}
    for category_id, category_name in category_names.items():
        first_id.setdefault(category_name, category_id)  # a name listed twice keeps its first id
    return DatasetFiles("objects", "coco", photos, [(i, n) for n, i in first_id.items()], notes)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and _finite(float(value))


def _category(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: a category has no name")
    text = value.strip()
    if len(text) > MAX_CATEGORY_CHARS or not text.isprintable():
        raise DatasetError(f"{where}: category names are at most {MAX_CATEGORY_CHARS} printable characters")
    return text


def _photos_in(tree: FileTree, folder: str) -> list[str]:
    prefix = f"{folder}/" if folder else ""
    return [n for n in tree.sizes if n.startswith(prefix) and n.lower().endswith(IMAGE_SUFFIXES)]


def _yolo(tree: FileTree) -> DatasetFiles | None:
    labels = [n for n in tree.sizes if n.endswith(".txt") and ("labels/" in f"/{n}")]
    if not labels:
        return None
    names = _yolo_names(tree)
    photos: list[DatasetPhoto] = []
    notes: list[str] = []
    count = 0
    label_of = {posixpath.splitext(n)[0]: n for n in labels}
    for image in sorted(_photos_in(tree, "")):
        if "images/" not in f"/{image}":
            continue
        stem = posixpath.splitext(image)[0]
        head, _, tail = f"/{stem}".rpartition("/images/")
        label_file = label_of.get(f"{head}/labels/{tail}".lstrip("/"))
        boxes: list[TruthBox] = []
        for number, line in enumerate((tree.text(label_file) if label_file else "").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{label_file}, line {number}"
            parts = line.split()
            try:
                index, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
            except (ValueError, IndexError):
                raise DatasetError(f"{where}: a box is 'class x_center y_center width height'") from None
            if not 0 <= index < len(names):
                raise DatasetError(f"{where}: class {index} is not among the {len(names)} names")
            boxes.append(TruthBox(names[index], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), fractions=True))
            count += 1
            if count > MAX_ANNOTATIONS:
                raise DatasetError(f"{tree.origin} has more than {MAX_ANNOTATIONS:,} annotations")
        if label_file is None:
            notes.append(f"{image} has no label file: no objects in it")
        photos.append(DatasetPhoto(image, tree.photo(image), len(photos) + 1, tuple(boxes)))
    return DatasetFiles("objects", "yolo", photos, list(enumerate(names)), notes[:20])


def _yolo_names(tree: FileTree) -> list[str]:
    """data.yaml's ``names`` (a list or {index: name}), or a names file (one per line)."""
    yamls = sorted((n for n in tree.sizes if n.endswith((".yaml", ".yml"))), key=lambda n: n.count("/"))
    for name in yamls:
        try:
            document = yaml.safe_load(tree.text(name))
        except yaml.YAMLError as exc:
            raise DatasetError(f"{name} is not valid YAML: {str(exc)[:200]}") from None
        listed = document.get("names") if isinstance(document, dict) else None
        if isinstance(listed, dict):
            if not all(isinstance(k, int) for k in listed) or sorted(listed) != list(range(len(listed))):
                raise DatasetError(f"{name}: names must be numbered 0, 1, 2, …")
            listed = [listed[i] for i in range(len(listed))]
        if isinstance(listed, list):
            return [_category(n, name) for n in listed]
    for name in sorted(n for n in tree.sizes if n.endswith((".names", "classes.txt"))):
        return [_category(line, name) for line in tree.text(name).splitlines() if line.strip()]
    raise DatasetError(f"{tree.origin}: a YOLO dataset needs data.yaml with names, or a .names or classes.txt file")


def _voc(tree: FileTree) -> DatasetFiles | None:
    documents = sorted(n for n in tree.sizes if n.endswith(".xml"))
    if not documents:
        return None
    photos: list[DatasetPhoto] = []
    categories: dict[str, None] = {}
    count = 0
    for name in documents:
        try:
            root = ElementTree.fromstring(tree.read(name, 4 * 1024 * 1024))
        except ElementTree.ParseError as exc:
            raise DatasetError(f"{name} is not valid XML: {exc}") from None
        if root.tag != "annotation":
            continue
        file_name = (root.findtext("filename") or "").strip()
        base = posixpath.dirname(name)
        found = tree.find(file_name, "JPEGImages", posixpath.join(posixpath.dirname(base), "JPEGImages"), base, "")
        if found is None:
            raise DatasetError(f"{name} names the photo {file_name[:80]!r}, which is not in the dataset")
        boxes = []
        for item in root.iter("object"):
            category = _category(item.findtext("name"), name)
            box = item.find("bndbox")
            try:
                xyxy = tuple(float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                raise DatasetError(f"{name}: a {category} has no numeric bndbox") from None
            boxes.append(TruthBox(category, xyxy, crowd=(item.findtext("difficult") or "0").strip() == "1"))  # type: ignore[arg-type]
            categories[category] = None
            count += 1
            if count > MAX_ANNOTATIONS:
                raise DatasetError(f"{tree.origin} has more than {MAX_ANNOTATIONS:,} annotations")
        photos.append(DatasetPhoto(found, tree.photo(found), len(photos) + 1, tuple(boxes)))
    if not photos:
        return None
    return DatasetFiles("objects", "voc", photos, list(enumerate(categories, 1)))


def _image_folder(tree: FileTree) -> DatasetFiles | None:
    photos: list[DatasetPhoto] = []
    for name in sorted(_photos_in(tree, "")):
        parts = name.split("/")
        if len(parts) < 2:
            continue
        photos.append(DatasetPhoto(name, tree.photo(name), len(photos) + 1, label=_category(parts[-2], name)))
    if not photos:
        return None
    return DatasetFiles(
        "labels", "imagefolder", photos, list(enumerate(dict.fromkeys(p.label or "" for p in photos), 1))
    )


# -- categories: a dataset's names matched to a model's classes -----------------------------------------------------

#: spellings of one class across COCO, Pascal VOC and darknet's coco.names (the user's own table comes first)
SYNONYMS = (
    ("motorcycle", "motorbike"), ("airplane", "aeroplane"), ("couch", "sofa"), ("tv", "tvmonitor", "television"),
    ("hair dryer", "hair drier"), ("donut", "doughnut"), ("cell phone", "mobile phone"), ("person", "people"),
)  # fmt: skip


def _key(name: str) -> str:
    """A name compared without case, spaces, hyphens or underscores ("Dining_table" is "diningtable")."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def match_categories(
    categories: Iterable[str], classes: list[list[str]], synonyms: dict[str, str] | None = None
) -> dict[str, int | None]:
    """Each dataset category's model class (its index in ``classes``, each class given by all its names), or None:
    the user's ``synonyms`` (dataset name -> class name) first, then the same name, then ``SYNONYMS``."""
    index: dict[str, int] = {}
    for i, names in enumerate(classes):
        for name in names:
            index.setdefault(_key(name), i)
    spelled = {_key(a): [_key(b) for b in group] for group in SYNONYMS for a in group}
    user = {_key(k): _key(v) for k, v in (synonyms or {}).items()}
    matched: dict[str, int | None] = {}
    for category in categories:
        key = _key(category)
        tries = [user[key]] if key in user else []
        tries += [key, *spelled.get(key, [])]
        matched[category] = next((index[t] for t in tries if t in index), None)
    return matched
