"""Batch inference across callers: the requests waiting for a model while it runs go together as its next run.

A worker runs several jobs side by side over one model set. On the CPU a convolution network gets through a batch
of photos faster per photo than one at a time (fewer thread hand-offs per layer, larger matrix products), so the
photos that reach a model while it is busy wait for it and then run as one batch. A request that finds the model
idle runs at once, alone: no time window, nothing added to a single photo's latency.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort


def with_batch_axis(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with a free first (batch) dimension on its inputs and outputs, for graphs written for one photo
    whose layers do not fix it (convolutions, pooling, concatenations, Flatten and Gemm)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]  # shapes inferred for batch 1; ONNX Runtime infers them again
    return model


@dataclass(eq=False)
class _Request:
    tensor: np.ndarray
    outputs: list[np.ndarray] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class BatchingRunner:
    """Runs one ONNX session for several threads: whoever finds it idle runs every waiting request of its input
    shape (up to ``max_batch``, in arrival order) as one batch and hands each caller its rows."""

    def __init__(self, session: ort.InferenceSession, max_batch: int) -> None:
        self.session, self.max_batch = session, max_batch
        self._input = session.get_inputs()[0].name
        self._waiting: list[_Request] = []
        self._running = False
        self._changed = threading.Condition()
        #: runs by the number of photos they took (what batching achieved, for the benchmark and the tests)
        self.batch_sizes: Counter[int] = Counter()

    def run(self, output_names: list[str] | None, tensor: np.ndarray) -> list[np.ndarray]:
        """The session's outputs for one photo's ``tensor`` (batch of one), as ``session.run`` returns them."""
        request = _Request(tensor)
        with self._changed:
            self._waiting.append(request)
        while True:
            with self._changed:
                while self._running and not request.done:
                    self._changed.wait()
                if request.done:
                    if request.error is not None:
                        raise request.error
                    return request.outputs
                self._running = True
                batch = self._next_batch()
            self._run(output_names, batch)

    def _next_batch(self) -> list[_Request]:
        """The first waiting request and those after it with its input shape, up to ``max_batch``."""
        shape = self._waiting[0].tensor.shape
        batch = [r for r in self._waiting if r.tensor.shape == shape][: self.max_batch]
        self._waiting = [r for r in self._waiting if r not in batch]
        return batch

    def _run(self, output_names: list[str] | None, batch: list[_Request]) -> None:
        try:
            tensor = batch[0].tensor if len(batch) == 1 else np.concatenate([r.tensor for r in batch])
            outputs = self.session.run(output_names, {self._input: tensor})
            for row, request in enumerate(batch):
                request.outputs = [output[row : row + 1] for output in outputs]
        except BaseException as exc:  # every caller of the batch gets the error, not only the one that ran it
            for request in batch:
                request.error = exc
        finally:
            with self._changed:
                for request in batch:
                    request.done = True
                self._running = False
                self.batch_sizes[len(batch)] += 1
                self._changed.notify_all()
