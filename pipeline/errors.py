"""The one exception type for problems a user can fix; the CLI prints its message as a single line."""
import contextlib
import errno
import functools


class AugmentError(Exception):
    """A user-fixable problem: bad path, bad image set, bad option. The message says what to do."""


class TransientError(AugmentError):
    """A failure that may pass when retried (a busy lock, a flaky file system); orchestrators retry these."""


# Failures of the machine rather than of the code: the same call fails the same way until the user acts (frees disk,
# fixes permissions, chooses another folder), so they are reported in one line and never retried.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EDQUOT,
                      errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP, errno.EMFILE, errno.ENOENT}


def as_user_error(error: OSError) -> AugmentError | None:
    """The one-line AugmentError for an environment failure (disk full, read-only, not a folder ...), else None."""
    if error.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = f" '{error.filename}'" if error.filename else ""
    return AugmentError(f"cannot use{where}: {error.strerror or error} (errno {errno.errorcode.get(error.errno, error.errno)})")


@contextlib.contextmanager
def environment_errors():
    """Turn an environment OSError raised inside the block into a one-line AugmentError (not retried)."""
    try:
        yield
    except OSError as error:
        user_error = as_user_error(error)
        if user_error is None:
            raise
        raise user_error from None


def reports_environment_errors(function):
    """environment_errors() around every call of `function`."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with environment_errors():
            return function(*args, **kwargs)
    return wrapper
