"""Errors the worker understands. Anything an executor raises is retried with backoff until the event's
attempts run out (then the event is `dead`); `PermanentError` skips the remaining retries."""

from __future__ import annotations


class TransientError(Exception):
    """A fault worth retrying: a 5xx, a timeout, a lost race, a git push rejected by a concurrent push."""


class PermanentError(Exception):
    """A fault no retry will fix (e.g. a malformed write-back target); the event goes straight to `dead`."""
