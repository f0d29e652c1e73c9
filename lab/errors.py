"""The lab's exceptions: one root with an exit code; messages say what, why, and what to do.

Fatal errors (bad config, no engine) are caught only in ``cli.main``. Per-target failures
(an image that cannot be had, a container that crashed) become that row's status instead.
"""


class LabError(Exception):
    """Root of every error the lab raises on purpose."""

    exit_code = 2


class ConfigError(LabError):
    """The matrix, a config file or the command line is wrong."""

    exit_code = 2


class EngineUnavailable(LabError):
    """No Docker engine answers."""

    exit_code = 3


class _WithLogTail(LabError):
    """An error that carries the end of a log (build output, container logs)."""

    exit_code = 4

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class DockerError(_WithLogTail):
    """A Docker operation failed (converted from the SDK's and requests' exceptions)."""


class ImageUnavailable(LabError):
    """A target's base image cannot be had here (no registry, no emulation, ...)."""

    exit_code = 4


class BuildFailed(_WithLogTail):
    """Making a target's image failed; ``log_tail`` holds the end of the build log."""


class Interrupted(LabError):
    """The user pressed Ctrl-C; what finished was kept. ``forced``: pressed twice."""

    exit_code = 130

    def __init__(self, message: str, *, forced: bool = False) -> None:
        super().__init__(message)
        self.forced = forced
