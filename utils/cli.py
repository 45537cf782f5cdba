"""How the kit's command-line tools fail: a user's mistake is one clear line and exit code 2.

    def main(argv=None) -> int: ...
    if __name__ == "__main__":
        sys.exit(run(main))

``run`` calls ``main``; a ``UserError`` (missing or wrong file, unknown name, unfinished notebook),
``FileNotFoundError`` or ``ValueError`` raised by the kit's input checks prints ``error: <message>``
on stderr and returns 2, with no traceback. ``--debug`` anywhere on the command line shows the
traceback instead. Anything else is a bug of the kit and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from utils.detectors.notebooks import UserError

USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
DEBUG_FLAG = "--debug"
USAGE_ERROR = 2


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        return int(main(args) or 0)
    except USER_ERRORS as err:
        if debug:
            raise
        message = str(err) if not isinstance(err, OSError) or not err.filename else f"{err.filename}: {err.strerror}"
        print(f"error: {message} (--debug shows the traceback)", file=sys.stderr)
        return USAGE_ERROR
