"""Similar photos and near-duplicates, on SQLite and PostgreSQL: stored with each analysis, found, kept in step with
deletions and resets, backfilled for rows from before, and offered by the API and the CLI."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from picmetric import AnalysisOptions
from picmetric.core.similar import hash_distance, near_duplicate, perceptual_hash
from picmetric.interfaces.api import create_app
from picmetric.interfaces.cli import main

from .conftest import imagenet_samples
from .services import ApiServer


def _edited(path, edit: str) -> bytes:
    with Image.open(path) as photo:
        image = photo.convert("RGB")
    if edit == "half":
        image = image.resize((image.width // 2, image.height // 2))
    elif edit == "brighter":
        image = ImageEnhance.Brightness(image).enhance(1.4)
    elif edit in ("crop", "crop, half size, JPEG 30"):
        image = image.crop((image.width // 14, image.height // 14, image.width * 13 // 14, image.height * 13 // 14))
    if edit == "crop, half size, JPEG 30":  # what a phone's share sheet does, all at once
        image = image.resize((image.width // 2, image.height // 2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality={"half": 40, "crop, half size, JPEG 30": 30}.get(edit, 90))
    return buffer.getvalue()


def test_the_rules_keep_same_photo_and_similar_scene_apart():
    assert near_duplicate(3, 0.80) and near_duplicate(40, 0.90)  # edited: hash close, or features very close
    assert near_duplicate(22, 0.70)  # cropped, halved and recompressed at once: both moved, both still close
    assert not near_duplicate(30, 0.80) and not near_duplicate(18, 0.57)  # a similar scene, different photos
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), np.uint8)
    assert hash_distance(perceptual_hash(noise), perceptual_hash(noise)) == 0


def test_edited_copies_are_near_duplicates_and_unrelated_photos_are_not(service, zidane_path, bus_path):
    photos = [p for p, _ in imagenet_samples()[:6]] + [bus_path, zidane_path]
    stored = [service.submit(p.read_bytes()) for p in photos]
    assert len(service.similar_photos.index) == 0  # filled lazily, at the first search
    for edit in ("half", "brighter", "crop", "crop, half size, JPEG 30"):
        copy = service.submit(_edited(zidane_path, edit), name=f"zidane-{edit}.jpg")
        twin = service.near_duplicate_of(copy.sha256)
        assert twin is not None and twin.sha256 == stored[-1].sha256, (edit, twin)
        service.delete(copy.sha256)
    for original in stored:  # the shipped photos are all different pictures
        assert service.near_duplicate_of(original.sha256) is None
    assert len(service.similar_photos.index) == len(photos)  # caught up at the searches: the copies are gone
    alike = service.similar(stored[-1].sha256, limit=3)
    assert [p.sha256 for p in alike] != [] and stored[-1].sha256 not in [p.sha256 for p in alike]
    assert all(0 <= p.similarity <= 1 for p in alike) and alike == sorted(alike, key=lambda p: -p.similarity)
    asked = service.similar_to(_edited(bus_path, "half"), limit=2)  # a photo in, neighbours out, nothing stored
    assert asked[0].sha256 == stored[-2].sha256 and asked[0].near_duplicate
    assert service.history().total == len(photos)


def test_deleting_or_resetting_takes_photos_out_of_the_index(service, zidane_path, bus_path):
    zidane = service.submit(zidane_path.read_bytes())
    copy = service.submit(_edited(zidane_path, "half"))
    assert service.near_duplicate_of(copy.sha256).sha256 == zidane.sha256
    assert service.delete(zidane.sha256)
    assert service.near_duplicate_of(copy.sha256) is None
    assert zidane.sha256 not in [p.sha256 for p in service.similar(copy.sha256)]
    bus = service.submit(bus_path.read_bytes())
    service.reset()
    assert service.similar(bus.sha256) is None and service.similar_to(bus_path.read_bytes()) == []
    assert len(service.similar_photos.index) == 0


def test_rows_from_before_are_described_by_backfill_or_when_asked(service, zidane_path, bus_path):
    options = AnalysisOptions(classifier="mobilenet_v2")  # another classifier: no features of the indexed one
    zidane = service.submit(zidane_path.read_bytes(), options=options)
    bus = service.submit(bus_path.read_bytes(), options=options)
    assert service._repository.signature_stats("efficientnet_lite2")[0] == 0
    assert service.backfill_signatures() == 2 and service.backfill_signatures() == 0
    assert service._repository.signature_stats("efficientnet_lite2")[0] == 2
    service._repository.reset()
    zidane = service.submit(zidane_path.read_bytes(), options=options)
    found = service.similar(zidane.sha256)  # described when asked
    assert found == [] and service._repository.signature_stats("efficientnet_lite2")[0] == 1
    assert bus.sha256 not in [p.sha256 for p in found]


def test_api_and_cli_answer_similar_photos(service, zidane_path, bus_path, tmp_path, monkeypatch, capsys):
    zidane = service.submit(zidane_path.read_bytes())
    service.submit(bus_path.read_bytes())
    copy = _edited(zidane_path, "half")
    with ApiServer(create_app(service.settings, service)) as url:
        similar = httpx.get(f"{url}/api/v1/analyses/{zidane.sha256}/similar", params={"limit": 1})
        assert similar.status_code == 200, similar.text
        (neighbour,) = similar.json()["items"]
        assert set(neighbour) >= {"sha256", "similarity", "near_duplicate", "thumbnail"}
        assert httpx.get(f"{url}/api/v1/analyses/{'0' * 64}/similar").status_code == 404
        asked = httpx.post(f"{url}/api/v1/similar", files={"file": ("copy.jpg", copy, "image/jpeg")})
        assert asked.status_code == 200 and asked.json()["items"][0]["sha256"] == zidane.sha256
        assert asked.json()["items"][0]["near_duplicate"] is True
        made = httpx.post(f"{url}/api/v1/analyses", files={"file": ("copy.jpg", copy, "image/jpeg")}, timeout=120)
        assert made.json()["near_duplicate_of"]["sha256"] == zidane.sha256  # said in the result JSON
        assert httpx.get(f"{url}/api/v1/analyses", params={"page_size": 5}).json()["total"] == 3
    path = tmp_path / "copy.jpg"
    path.write_bytes(copy)
    monkeypatch.setattr("picmetric.interfaces.cli.stored.open_service", lambda settings: service)
    assert main(["similar", str(path), "--limit", "2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [set(item) for item in listed] == [{"sha256", "similarity", "near_duplicate"}] * 2
    assert listed[0]["sha256"] == zidane.sha256 and listed[0]["near_duplicate"] is True
    assert listed[0]["similarity"] >= listed[1]["similarity"]


@pytest.mark.parametrize("limit", [0, 101])
def test_similar_refuses_a_limit_out_of_range(service, zidane_path, limit):
    zidane = service.submit(zidane_path.read_bytes())
    with ApiServer(create_app(service.settings, service)) as url:
        answer = httpx.get(f"{url}/api/v1/analyses/{zidane.sha256}/similar", params={"limit": limit})
        assert answer.status_code == 422
