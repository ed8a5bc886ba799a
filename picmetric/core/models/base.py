"""Model base class: lazy, lock-guarded loading of ONNX Runtime sessions, shared by all analyzers."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from picmetric.core.models.batching import BatchingRunner, with_batch_axis
from picmetric.settings import Settings


def available_providers() -> list[str]:
    """CUDA first when this ONNX Runtime build offers it, CPU always."""
    offered = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in offered]


def create_session(model: Path | bytes, settings: Settings) -> ort.InferenceSession:
    """A session on a model file (or a serialized model) with PicMetric's thread and provider settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1  # our graphs are chains: ORT's parallel executor has nothing to overlap
    options.enable_cpu_mem_arena = settings.ort_memory_arena
    # Spinning threads burn the shared cores that the other models (run concurrently) need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Face detectors see a new input shape per photo (and MTCNN per pyramid level): cuDNN's exhaustive algorithm
    # search on every new shape cost seconds per photo on an H100; its heuristic choice costs nothing.
    providers: list = [
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}) if p == "CUDAExecutionProvider" else p
        for p in available_providers()
    ]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


class OnnxModel(ABC):
    """A model that loads on first use, once, even when several threads ask at the same time."""

    #: short identifier used in results, timings and storage
    name: str = "model"
    #: its graphs are written for one photo but fix no batch size in their layers: with ``inference_batch`` > 1,
    #: the photos of concurrent callers run together (``BatchingRunner``)
    batchable: bool = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, ort.InferenceSession] | None = None
        self._runners: dict[str, BatchingRunner] = {}
        #: cache folder and thread budget: the Analyzer that holds the model sets its own
        self.settings: Settings | None = None

    @property
    def model_settings(self) -> Settings:
        if self.settings is None:
            raise RuntimeError(f"{self.name} has no settings: run it through an Analyzer, or give it its settings")
        return self.settings

    @property
    def loaded(self) -> bool:
        return self._sessions is not None

    @property
    def sessions(self) -> dict[str, ort.InferenceSession]:
        if self._sessions is None:
            self.load()
        assert self._sessions is not None
        return self._sessions

    def load(self) -> None:
        with self._lock:
            if self._sessions is None:
                settings = self.model_settings
                batched = self.batchable and settings.inference_batch > 1
                sessions = {
                    key: create_session(with_batch_axis(onnx.load(str(path))).SerializeToString() if batched else path,
                                        settings)
                    for key, path in self._model_files().items()
                }  # fmt: skip
                if batched:
                    self._runners = {key: BatchingRunner(s, settings.inference_batch) for key, s in sessions.items()}
                self._sessions = sessions

    def run(self, role: str, output_names: list[str] | None, tensor: np.ndarray) -> list[np.ndarray]:
        """The outputs of the ``role`` session for one photo's input ``tensor``: run together with other callers'
        photos where batching is on, else at once."""
        session = self.sessions[role]
        runner = self._runners.get(role)
        if runner is not None:
            return runner.run(output_names, tensor)
        return session.run(output_names, {session.get_inputs()[0].name: tensor})

    @abstractmethod
    def _model_files(self) -> dict[str, Path]:
        """ONNX files to open, by role (converting into the cache first where needed)."""

    @property
    @abstractmethod
    def registry_key(self) -> tuple:
        """Identifies this configuration among an Analyzer's models (one instance per key)."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Identifies weights and settings that change outputs (stored with every analysis)."""
