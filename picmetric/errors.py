"""Typed errors. Every message is meant to be shown to a user as is: it says what was wrong, never a trace."""


class PicMetricError(Exception):
    """Base class: anything PicMetric refuses or cannot do, with a user-facing message. Each kind carries the
    HTTP status the API answers with: a client's mistake is a 4xx, an unavailable backend a 503, never a 500."""

    http_status: int = 400


class InvalidImageError(PicMetricError):
    """The bytes are empty, not an image, or a damaged one."""


class ImageTooLargeError(InvalidImageError):
    """Too many pixels or absurd dimensions (decompression-bomb guard)."""

    http_status = 413


class URLRefusedError(PicMetricError):
    """The URL is not allowed: wrong scheme, or a host that points inside the network."""


class URLTooLongError(URLRefusedError):
    """The URL is longer than any image address needs (and than an index row holds)."""

    http_status = 414


class FetchError(PicMetricError):
    """The URL was allowed but fetching it failed: timeout, HTTP error, too large, or not an image."""


class ServerBusyError(PicMetricError):
    """Too much work of this kind in flight right now (e.g. large images being decoded); retrying later helps."""

    http_status = 503


class ModelUnavailableError(PicMetricError):
    """A model's weights package is not installed or its file is missing."""


class InvalidModelError(PicMetricError):
    """A model file a user brought is unreadable or does not fit its cfg, names or layout; the message says how."""


class UnknownModelError(PicMetricError):
    """No model of that name is installed or added."""

    http_status = 404


class DatabaseError(PicMetricError):
    """The database could not be reached or refused a write."""

    http_status = 503


class ImageDeletedError(PicMetricError):
    """The image was deleted while this call was analysing it: nothing of it is kept; sending it again works."""

    http_status = 409


class AnalysisFailedError(PicMetricError):
    """The models could not analyse this image; the failure is recorded in history."""

    http_status = 422


class QueueUnavailableError(PicMetricError):
    """The job broker (Redis or RabbitMQ) cannot be reached: nothing was queued; retrying later helps."""

    http_status = 503


class StorageError(PicMetricError):
    """The object store could not be reached or refused an operation."""

    http_status = 503


class MissingBlobError(StorageError):
    """A blob a row points to is not in the store (removed behind PicMetric's back): not an outage."""

    http_status = 410


class NotFoundError(PicMetricError):
    """No such analysis, image, job or batch: the route's own 404, in its body shape."""

    http_status = 404
