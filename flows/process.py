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

from pipeline.errors import AugmentError, as_user_error

console = Console(stderr=True, soft_wrap=True)
SHUTDOWN_SECONDS = 30
OWNER_VARIABLE = "AUGMENT_OWNER_PID"


def end_orphaned_servers() -> list[int]:
    """Stop temporary Prefect servers whose augment process is gone (killed with SIGKILL, which leaves no chance to
    stop them): processes that inherited OWNER_VARIABLE from a process that no longer exists and run Prefect's
    server. Linux only (it reads /proc); returns the pids stopped."""
    import signal

    proc, stopped = "/proc", []
    if not os.path.isdir(proc):
        return stopped
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"{proc}/{entry}/environ", "rb") as handle:
                environ = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
            with open(f"{proc}/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ")
        except OSError:  # gone, or another user's
            continue
        owner = environ.get(OWNER_VARIABLE.encode())
        if not owner or not owner.isdigit() or b"prefect" not in command or b"server" not in command:
            continue
        try:
            os.kill(int(owner), 0)
            continue  # its augment process is alive: not an orphan
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.kill(int(entry), signal.SIGTERM)
            stopped.append(int(entry))
        except OSError:
            pass
    return stopped


def stop_on_sigterm() -> None:
    """SIGTERM ends the command the way Ctrl-C does (KeyboardInterrupt), so exit handlers run and the temporary
    Prefect server is stopped with it; Python's default SIGTERM action exits at once and leaves it running."""
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def quiet_environment() -> None:
    """Offline-safe Prefect and DVC defaults; a user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "augment")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # what Prefect's client reads before printing its telemetry notice
    # Inherited by the temporary Prefect server this process may start: a later command finds it by this mark and
    # ends it if this process died without stopping it (kill -9), see end_orphaned_servers.
    os.environ[OWNER_VARIABLE] = str(os.getpid())


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
    stop_on_sigterm()
    for pid in end_orphaned_servers():
        logging.getLogger("augment").info("stopped an orphaned temporary Prefect server (pid %d) of a killed run", pid)
    # Registered first so it runs last at exit: the error line comes after Prefect's "stopping server" log.
    atexit.register(_print_pending_error)
    try:
        app()
    except AugmentError as error:
        _pending_error.append(str(error))
        sys.exit(1)
    except OSError as error:  # the machine, not the code: disk full, read-only, not a folder ...
        user_error = as_user_error(error)
        if user_error is None:
            raise
        _pending_error.append(str(user_error))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
