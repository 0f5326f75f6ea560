"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with status 2."""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or unsafe to load; the message names the file."""
