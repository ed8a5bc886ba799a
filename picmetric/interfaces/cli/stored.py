"""The commands on what is stored: ``history``, ``similar``, ``reset`` and ``db upgrade|sweep|backfill``."""

from __future__ import annotations

import argparse
import json
import sys

from picmetric.core.decoding import IMAGE_SOURCES
from picmetric.interfaces.cli.common import load_target, open_service
from picmetric.service.analyses import migrate_database
from picmetric.service.types import HistoryFilter
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
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


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    page = open_service(settings).history(
        HistoryFilter(text=args.text, min_faces=args.min_faces, source=args.source),
        page=args.page,
        page_size=args.limit,
    )
    if args.json:
        json.dump(
            [
                {k: v for k, v in vars(item).items() if k != "thumbnail"} | {"created_at": item.created_at.isoformat()}
                for item in page.items
            ],
            sys.stdout,
            indent=2,
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


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    if not args.yes:
        print("picmetric: reset deletes every stored image and analysis; run again with --yes", file=sys.stderr)
        return 2
    open_service(settings).reset()
    print("all stored analyses and images deleted")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "upgrade":
        revision = migrate_database(settings)
        print(f"{settings.safe_database_url}: schema at revision {revision}")
    elif args.action == "backfill":
        described = open_service(settings).backfill_signatures()
        print(f"described {described} stored images for similar-photo search (pHash and features)")
    else:
        removed = open_service(settings).sweep_orphans()
        print(f"removed {len(removed)} orphaned blobs")
    return 0


def cmd_similar(args: argparse.Namespace, settings: Settings) -> int:
    """Stored photos like a photo (nothing is stored), best first."""
    found = open_service(settings).similar_to(load_target(args.photo, settings).data, args.limit)
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
