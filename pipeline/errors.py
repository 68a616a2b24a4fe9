"""The one exception type for problems a user can fix; the CLI prints its message as a single line."""


class AugmentError(Exception):
    """A user-fixable problem: bad path, bad image set, bad option. The message says what to do."""


class TransientError(AugmentError):
    """A failure that may pass when retried (a busy lock, a flaky file system); orchestrators retry these."""
