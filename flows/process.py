"""Process plumbing of the `augment` command: environment defaults, logging, one-line user errors, and a bounded
shutdown of long-running `serve`. The commands themselves are in flows/cli.py."""
from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Callable

from rich.console import Console
from rich.logging import RichHandler

from pipeline.errors import AugmentError

console = Console(stderr=True, soft_wrap=True)
SHUTDOWN_SECONDS = 30


def quiet_environment() -> None:
    """Offline-safe Prefect and DVC defaults; a user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "augment")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def setup_logging() -> None:
    handler = RichHandler(console=console, show_path=False, show_time=False)
    logger = logging.getLogger("augment")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(handler)
    logger.propagate = False


class _ShortUserErrors(logging.Filter):
    """Drop the traceback from Prefect's log record of a user error; the CLI prints its one-line message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], AugmentError):
            record.exc_info, record.exc_text = None, None
        return True


def filter_user_error_tracebacks() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_ShortUserErrors())


def drop_cancelled_callbacks(record: logging.LogRecord) -> bool:
    """While `serve` shuts down, Prefect's runner cancels the tasks that serve its control-channel connections, and
    Python 3.11's asyncio streams then log each cancelled one as an ERROR with a CancelledError traceback (3.12
    checks for cancellation first). That is not a failure of the run; everything else asyncio logs still shows."""
    import asyncio

    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, asyncio.CancelledError) and record.getMessage().startswith("Exception in callback"))


def bound_shutdown(message: str) -> None:
    """Ctrl-C must stop `serve`: Prefect's runner once hung for over a minute while shutting down (in the test suite,
    under load), so after a Ctrl-C it gets SHUTDOWN_SECONDS to finish cleanly, then the process exits anyway."""
    import signal
    import threading

    def on_interrupt(signum, frame):
        def force() -> None:
            console.print(f"{message} (shutdown forced after {SHUTDOWN_SECONDS} s)")
            os._exit(0)

        timer = threading.Timer(SHUTDOWN_SECONDS, force)
        timer.daemon = True  # a clean shutdown does not wait for it
        timer.start()
        logging.getLogger("asyncio").addFilter(drop_cancelled_callbacks)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)


_pending_error: list[str] = []


def _print_pending_error() -> None:
    for message in _pending_error:
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def run_app(app: Callable[[], None]) -> None:
    """Run the command line: user errors end in one line and exit code 1, never a traceback."""
    quiet_environment()
    setup_logging()
    # Registered first so it runs last at exit: the error line comes after Prefect's "stopping server" log.
    atexit.register(_print_pending_error)
    try:
        app()
    except AugmentError as error:
        _pending_error.append(str(error))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
