"""Errors that reach the command line as one line; TF-free so the CLI can catch them cheaply."""


class DataError(ValueError):
  """A dataset cannot be loaded; the message says where it looked and what to run."""


class RunFailed(RuntimeError):
  """Training diverged (NaN/Inf loss); the run folder holds failed.json."""


class UsageError(ValueError):
  """Bad command-line input: printed as one line, exit status 2."""
