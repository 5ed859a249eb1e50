"""The one line an operator sees of an error, wherever it was raised."""

from temporalio.exceptions import ActivityError, ChildWorkflowError


def one_line(text: str, limit: int = 300) -> str:
    """Whitespace folded to one line, at most `limit` characters; the end is kept, where tools
    print what went wrong."""
    return " ".join(text.split())[-limit:]


def error_line(err: BaseException) -> str:
    """The innermost cause's first line: an activity's ApplicationError, without wrapper noise."""
    while isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause is not None:
        err = err.cause
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
