"""Reading what a running ``espfast up`` logs (its stderr) while it runs."""

from __future__ import annotations

import contextlib
import os

from espfast.static import Running


class Stderr:
    """What a running ``espfast up`` has written to stderr so far (read without waiting);
    call :meth:`done` before ``Running.stop``, which reads the rest."""

    def __init__(self, up: Running) -> None:
        assert up.proc.stderr is not None
        self.pipe = up.proc.stderr
        os.set_blocking(self.pipe.fileno(), False)
        self.text = ""

    def read(self) -> str:
        with contextlib.suppress(BlockingIOError):  # nothing (more) there yet
            while chunk := os.read(self.pipe.fileno(), 65536):
                self.text += chunk.decode(errors="replace")
        return self.text

    def done(self) -> None:
        self.read()
        os.set_blocking(self.pipe.fileno(), True)
