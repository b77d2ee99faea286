"""How workflows read the errors of failed activities; deterministic, like all workflow code."""

from temporalio.exceptions import ActivityError, ApplicationError


def error_type(error: ActivityError) -> str | None:
    """Return the `type` of the ApplicationError that failed the activity, or None."""
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def describe(error: BaseException) -> str:
    """Return the reason an activity failed, in one line, for logs and job states."""
    cause = error.cause if isinstance(error, ActivityError) and error.cause else error
    if isinstance(cause, ApplicationError) and cause.message:
        # The message alone: str() would put the error's type in front of it.
        return cause.message
    return str(cause) or type(cause).__name__
