"""The log of a worker process (`orbiter worker`, `orbiter up`): one line per event.

orbiter raises ApplicationError with one clear line for every failure it expects (a machine that
does not answer, a branch that does not exist yet); the SDK would log each attempt of such an
activity with a full traceback, which buries the line an operator needs. Those become one line;
any other exception (a bug) keeps its traceback.
"""

import logging

from temporalio.exceptions import ApplicationError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineExpectedFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if isinstance(err, ApplicationError):
            text = str(err).strip().splitlines()
            record.msg = f"{record.getMessage()}: {text[0] if text else err.type}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(level: int = logging.WARNING) -> None:
    """Warnings and errors of orbiter and the SDK to stderr, expected failures as one line."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(OneLineExpectedFailures())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
