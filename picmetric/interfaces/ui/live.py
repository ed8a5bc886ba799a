"""The live camera: each frame the browser streams (WebRTC, streamlit-webrtc over aiortc) gets its objects and faces
drawn on it and goes back. Frames that arrive while one is being analysed are dropped (streamlit-webrtc's async
processing hands over the newest), so the picture never lags behind the room."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import av
import numpy as np

from picmetric.core.annotate import BoxAnnotator, FaceAnnotator
from picmetric.core.options import AnalysisOptions
from picmetric.service.analyses import AnalysisService

#: no STUN or TURN server: localhost to localhost, or a classroom LAN, needs only the hosts' own addresses
RTC_CONFIGURATION: dict = {"iceServers": []}


@dataclass
class LiveState:
    """What the page shows beside the video, updated by the frame thread, read by the page."""

    seen: list[tuple[str, float]] = field(default_factory=list)  # objects in the newest frame: (class, confidence)
    faces: int = 0
    fps: float = 0.0  # frames analysed per second, over the last two seconds
    analyse_ms: float = 0.0  # the analysis' own time for the newest frame
    #: how far the newest drawn frame is behind the camera: its age (by its timestamp) when its boxes were drawn,
    #: the wait for the server plus the analysis; dropping frames keeps it from growing
    behind_ms: float = 0.0
    frames: int = 0


class LiveAnalyzer:
    """A ``video_frame_callback``: objects and faces on every frame it is given; thresholds change live."""

    def __init__(self, service: AnalysisService, min_confidence: float = 0.25, face_score: float = 0.8) -> None:
        self.service = service
        self.min_confidence, self.face_score = min_confidence, face_score
        self._lock = threading.Lock()
        self._state = LiveState()
        self._done: deque[float] = deque(maxlen=60)
        self._latest: np.ndarray | None = None
        self._boxes, self._faces = BoxAnnotator(), FaceAnnotator()
        self._clock: tuple[float, float] | None = None  # (wall clock, frame time) of the earliest frame seen

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        started = time.perf_counter()
        stamp = float(frame.time) if frame.time is not None else None
        pixels = frame.to_ndarray(format="rgb24")
        options = AnalysisOptions(  # Analyze's models, with the page's thresholds of the moment
            tasks=("objects", "faces"), min_confidence=self.min_confidence, face_confidence=self.face_score
        )
        objects, faces = self.service.see_frame(pixels, options)
        drawn = self._faces.annotate(self._boxes.annotate(pixels, objects), faces)
        finished = time.perf_counter()
        with self._lock:
            behind = 0.0
            if stamp is not None:
                # the earliest frame in arrives with the least delay: later frames are measured against it
                if self._clock is None or started - stamp < self._clock[0] - self._clock[1]:
                    self._clock = (started, stamp)
                behind = ((finished - self._clock[0]) - (stamp - self._clock[1])) * 1000
            self._done.append(finished)
            recent = [t for t in self._done if finished - t <= 2.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            order = np.argsort(-objects.confidence)
            self._state = LiveState(
                seen=[(objects.labels[i], float(objects.confidence[i])) for i in order], faces=len(faces), fps=fps,
                analyse_ms=(finished - started) * 1000, behind_ms=behind, frames=self._state.frames + 1,
            )  # fmt: skip
            self._latest = pixels
        return av.VideoFrame.from_ndarray(drawn, format="rgb24")

    def state(self) -> LiveState:
        with self._lock:
            return self._state

    def latest_frame(self) -> np.ndarray | None:
        """The newest camera frame as it came in (no boxes): what "Capture" stores."""
        with self._lock:
            return None if self._latest is None else self._latest.copy()
