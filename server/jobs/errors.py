"""Expected failures of job requests (shown to clients as is; see server/errors.py)."""

from __future__ import annotations

from server.errors import UserError

__all__ = ["InvalidJobIdError", "JobNotCancellableError", "JobNotFoundError", "RepositoryNotIndexedError"]


class InvalidJobIdError(UserError, ValueError):
    """A job id that is not a UUID."""


class JobNotFoundError(UserError, LookupError):
    """No job with this id (in the named project, or in any project)."""


class JobNotCancellableError(UserError):
    """The job already reached a final state."""


class RepositoryNotIndexedError(UserError, LookupError):
    """A repository that is not indexed in the project (or a project without any)."""
