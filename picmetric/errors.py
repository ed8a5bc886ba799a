"""Typed errors. Every message is meant to be shown to a user as is: it says what was wrong, never a trace."""


class PicMetricError(Exception):
    """Base class: anything PicMetric refuses or cannot do, with a user-facing message. The kinds below say what
    went wrong, not how a protocol answers it: the HTTP API's one table (``interfaces/api/errors.py``) maps each
    kind to its status. ``retryable``: asking again later may work (a backend away or busy), so a job meeting it is
    retried instead of failed."""

    retryable: bool = False


class InvalidImageError(PicMetricError):
    """The bytes are empty, not an image, or a damaged one."""


class ImageTooLargeError(InvalidImageError):
    """Too many pixels or absurd dimensions (decompression-bomb guard)."""


class URLRefusedError(PicMetricError):
    """The URL is not allowed: wrong scheme, or a host that points inside the network."""


class URLTooLongError(URLRefusedError):
    """The URL is longer than any image address needs (and than an index row holds)."""


class FetchError(PicMetricError):
    """The URL was allowed but fetching it failed: timeout, HTTP error, too large, or not an image."""


class ServerBusyError(PicMetricError):
    """Too much work of this kind in flight right now (e.g. large images being decoded); retrying later helps."""

    retryable = True


class ModelUnavailableError(PicMetricError):
    """A model's weights package is not installed or its file is missing."""


class InvalidModelError(PicMetricError):
    """A model file a user brought is unreadable or does not fit its cfg, names or layout; the message says how."""


class UnknownModelError(PicMetricError):
    """No model of that name is installed or added."""


class DatabaseError(PicMetricError):
    """The database could not be reached or refused a write."""

    retryable = True


class ImageDeletedError(PicMetricError):
    """The image was deleted while this call was analysing it: nothing of it is kept; sending it again works."""


class AnalysisFailedError(PicMetricError):
    """The models could not analyse this image; the failure is recorded in history."""


class QueueUnavailableError(PicMetricError):
    """The job broker (Redis or RabbitMQ) cannot be reached: nothing was queued; retrying later helps."""

    retryable = True


class StorageError(PicMetricError):
    """The object store could not be reached or refused an operation."""

    retryable = True


class MissingBlobError(StorageError):
    """A blob a row points to is not in the store (removed behind PicMetric's back): not an outage."""

    retryable = False


class NotFoundError(PicMetricError):
    """No such analysis, image, job or batch: the route's own 404, in its body shape."""


class InternalError(PicMetricError):
    """A failure of PicMetric itself (a bug, or a job whose worker kept dying): the details are in the log."""


def error_kind(name: str | None) -> type[PicMetricError]:
    """The error class a failed job recorded by name; the base class for a name this version does not know."""
    pending: list[type[PicMetricError]] = [PicMetricError]
    while pending:
        kind = pending.pop()
        if kind.__name__ == name:
            return kind
        pending += kind.__subclasses__()
    return PicMetricError
