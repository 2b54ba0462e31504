"""The one exception type users see: a problem they can fix, stated in one line."""


class UserError(Exception):
    """A bad input or missing resource; the message names the problem and the fix.

    The command line prints ``error: <message>`` and exits with status 2, with no traceback.
    Raise it (or a subclass) for anything a user can correct: unknown names, impossible
    hyper-parameters, missing or tampered datasets, unwritable paths.
    """
