"""Where opflow's messages go: the ``logging`` module, under the ``opflow`` logger.

Library code logs (``logging.getLogger(__name__)``) and never prints. A training run also
writes its messages to ``train.log`` in the run directory (:func:`run_log`). Who shows them
on the console is the application's choice: the ``opflow`` command configures the ``opflow``
logger (:func:`configure_console`; ``--quiet`` keeps warnings and errors only); a Python
session that configured nothing sees a run's progress lines on stdout, as it would from the
command line.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["configure_console", "run_log"]

_ROOT = "opflow"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _console_handler(stream) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_ConsoleFormatter())
    return handler


class _ConsoleFormatter(logging.Formatter):
    """Progress lines as they are; warnings and errors prefixed like the CLI's errors."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"opflow: {record.levelname.lower()}: {message}"
        return message


def configure_console(quiet: bool = False) -> None:
    """Show the ``opflow`` logger's messages on the console: progress (INFO) on stdout unless
    ``quiet``, warnings and errors on stderr. Files (``train.log``) still get everything."""
    logger = logging.getLogger(_ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, "opflow_console", False):
            logger.removeHandler(handler)
    problems = _console_handler(sys.stderr)
    problems.setLevel(logging.WARNING)
    handlers = [problems]
    if not quiet:
        progress = _console_handler(sys.stdout)
        progress.addFilter(lambda record: record.levelno < logging.WARNING)
        handlers.append(progress)
    for handler in handlers:
        handler.opflow_console = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed once, by these handlers


@contextlib.contextmanager
def run_log(run_dir: Path | None) -> Iterator[None]:
    """For the duration of a run: its messages also go to ``run_dir/train.log`` (appended, so
    a resumed run continues the file; ``None``: no file, e.g. on ranks other than 0), and to
    stdout when no one configured the ``opflow`` or the root logger."""
    logger = logging.getLogger(_ROOT)
    added: list[logging.Handler] = []
    level = logger.level
    if not logger.handlers and not logging.getLogger().handlers:
        added.append(_console_handler(sys.stdout))
    if run_dir is not None:
        # opened at the first message: a run that fails its checks leaves no file behind
        file_handler = logging.FileHandler(
            Path(run_dir) / "train.log", encoding="utf-8", delay=True
        )
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        added.append(file_handler)
    for handler in added:
        logger.addHandler(handler)
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in added:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
