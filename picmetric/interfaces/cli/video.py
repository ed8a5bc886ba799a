"""``picmetric video FILE|URL [--json] [--every K] [--line X1,Y1,X2,Y2] [--out OUT.mp4] [--csv OUT.csv]``: every
object in a clip tracked and counted (chunks as jobs: on workers when a broker is configured)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from picmetric.core.catalog import PRECISIONS
from picmetric.core.fetching import check_url, fetch_image_bytes
from picmetric.core.tracking import TRACKERS, CountingLine
from picmetric.interfaces.cli.common import UsageError, open_jobs, open_service
from picmetric.service.videos import VideoOptions, VideoProgress, VideoService, csv_rows
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    video = commands.add_parser("video", help="track and count the objects of a clip (MP4, MOV, WebM, AVI, MKV)")
    video.add_argument("clip", metavar="FILE|URL")
    video.add_argument("--json", action="store_true", help="frames, fps, tracks, crossings, counts per frame")
    video.add_argument("--every", type=int, default=1, metavar="K", help="analyse every K-th frame (default 1)")
    video.add_argument("--line", metavar="X1,Y1,X2,Y2", help="count crossings of this line (pixels)")
    video.add_argument("--out", type=Path, metavar="OUT.mp4", help="the annotated clip (H.264)")
    video.add_argument("--csv", type=Path, metavar="OUT.csv", help="every tracked box, one row each")
    video.add_argument("--detector", help="an object detector (the built-in one unless named)")
    video.add_argument("--precision", choices=PRECISIONS, default="int8")
    video.add_argument("--faces", action="store_true", help="count faces per frame too")
    video.add_argument("--tracker", choices=TRACKERS, default="bytetrack")
    video.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace, settings: Settings) -> int:
    try:
        line = CountingLine.parse(args.line) if args.line else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 1 <= args.every <= 60:
        raise UsageError("--every is between 1 and 60")
    options = VideoOptions(
        detector=args.detector or VideoOptions().detector, precision=args.precision, every=args.every,
        faces=args.faces, tracker=args.tracker, line=(line.x1, line.y1, line.x2, line.y2) if line else None,
    )  # fmt: skip
    if "://" in args.clip:
        data = fetch_image_bytes(check_url(args.clip, settings), settings=settings, video=True)
        name = args.clip.rsplit("/", 1)[-1][:200]
    else:
        path = Path(args.clip)
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
        if path.stat().st_size > settings.max_video_bytes:
            raise UsageError(f"{path.name} is larger than the {settings.max_video_bytes / 1e6:.0f} MB video limit")
        data, name = path.read_bytes(), path.name
    videos = VideoService(open_jobs(open_service(settings)))
    started = videos.analyse(data, options, name=name)

    def report(progress: VideoProgress) -> None:
        left = f", {progress.seconds_left:.0f} s left" if progress.seconds_left is not None else ""
        end = "\n" if progress.finished else ""
        print(f"\r{name}: {progress.frames_done}/{progress.frames_total} frames, {progress.frames_per_s:.1f} frames/s"
              f"{left}   ", end=end, file=sys.stderr, flush=True)  # fmt: skip

    result = videos.wait(started.id, report)
    if args.out:
        args.out.write_bytes(videos.clip(started.id))
    if args.csv:
        args.csv.write_text(csv_rows(result))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{name}: {result['frames']} frames at {result['fps']:g} fps, {len(result['tracks'])} tracks")
        for kind, count in sorted(_classes(result).items()):
            print(f"  {count:4d} {kind}")
        for kind, ways in sorted(result["totals"].items()):
            print(f"  crossed the line: {kind} in {ways['in']}, out {ways['out']}")
    videos.jobs.close()
    return 0


def _classes(result: dict) -> dict[str, int]:
    found: dict[str, int] = {}
    for track in result["tracks"]:
        found[track["class"]] = found.get(track["class"], 0) + 1
    return found
