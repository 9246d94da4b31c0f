"""The life of a server process the test bed started itself (mariadbd, etcd): ended only by its
own PID, SIGTERM first, SIGKILL after a timeout or at once (a crash test)."""

from __future__ import annotations

import logging
import subprocess
from typing import IO, Any, ClassVar

log = logging.getLogger("myrouter_testbed")


class OwnedProcess:
    """Mixed into a dataclass with ``name``, ``process`` (a Popen or None) and ``_console`` (the
    file its output goes to, or None). ``_registry`` is the module's dict of processes still
    running (stopped at exit): the subclass names its own."""

    _registry: ClassVar[dict[int, Any]]
    name: str
    process: subprocess.Popen | None
    _console: IO[bytes] | None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our process, SIGKILL after ``timeout`` s; wait for its exit."""
        self._end(timeout)

    def kill(self) -> None:
        """SIGKILL our process at once, as a crash would."""
        self._end(None)

    def _end(self, timeout: float | None) -> None:
        proc = self.process
        if proc is None:
            return
        try:
            if proc.poll() is None:
                if timeout is None:
                    proc.kill()
                else:
                    proc.terminate()
                    try:
                        proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        log.warning("testbed: %s (pid %d) still running %.0f s after SIGTERM; sending SIGKILL",
                                    self.name, proc.pid, timeout)
                        proc.kill()
                proc.wait(30)
            log.debug("testbed: %s ended (exit code %s)", self.name, proc.returncode)
        finally:
            if proc.poll() is not None:
                self._forget()

    def _forget(self) -> None:
        """Drop our references to an exited process."""
        self._registry.pop(id(self), None)
        self.process = None
        if self._console is not None:
            self._console.close()
            self._console = None
