"""Leaving at once on Ctrl-C or SIGTERM, with nothing half done left behind.

Raising KeyboardInterrupt is not enough while Keras trains: on the jax backend a
KeyboardInterrupt raised inside `model.fit` was observed to be swallowed, training went on
and the process never ended. So the command line's and the workers' signal handlers clean up
themselves and end the process: they release this process's run claims, remove the temporary
files of its unfinished atomic writes, say one line and exit.
"""

import os
import sys

from keras_fmnist import artifacts
from keras_fmnist import claims

EXIT_CODE = 130


def exit_now(message=None, code=EXIT_CODE):
    """Releases claims, removes temporary files, prints `message` to stderr, exits `code`."""
    claims.release_all()
    artifacts.remove_active_temp_files()
    if message:
        print(message, file=sys.stderr, flush=True)
    os._exit(code)
