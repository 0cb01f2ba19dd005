"""The `tfrewind` command line: flag files, parsing, and one line per error.

  tfrewind run --flagfile=flags/quickstart.flags
  tfrewind run --flagfile=flags/resnet20_one_shot.flags --seeds=1,2,3
  tfrewind sweep --flagfile=flags/wrn16_8_iterative.flags --seeds=1,2 --print > jobs.txt
  tfrewind stability --flagfile=flags/quickstart.flags --rewind_steps=0,30,100it \
      --densities=1.0,0.1 --out=runs/stability
  tfrewind models
  tfrewind report --root=runs --out=report
  tfrewind bench
  tfrewind export --run=runs/prune_... --out=exported
  tfrewind doctor --out=doctor

The flags: tfrewind.flagdefs; the commands: tfrewind.commands.
"""

import os
import sys
from typing import List, Optional

from absl import flags, logging

from tfrewind import commands
from tfrewind import flagdefs
from tfrewind.errors import (ConfigError, DiskFull, RunFailed, Stopped, UsageError, disk_full,
                             is_disk_full)

FLAGS = flags.FLAGS
COMMANDS = commands.COMMANDS


def expand_flagfiles(args: List[str], _stack=()) -> List[str]:
  """Inlines --flagfile=PATH arguments, recursively.

  Unlike absl's own --flagfile, a path inside a flag file is relative to that
  file, so `tfrewind run --flagfile=/anywhere/flags/x.flags` works from any
  folder. Lines are flags (--name=value); '#' and '//' start comments.
  """
  out = []
  for arg in args:
    if not arg.startswith("--flagfile="):
      out.append(arg)
      continue
    path = arg.split("=", 1)[1]
    if not os.path.isfile(path):
      raise UsageError(f"flag file {path} does not exist: check the path "
                       f"(the paper flag files are in flags/)")
    real = os.path.realpath(path)
    if real in _stack:
      raise UsageError(f"flag file {path} includes itself")
    lines = []
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("//"):
          continue
        if not line.startswith("--"):
          raise UsageError(f"{path}:{number}: {line!r} is not a flag: write --name=value")
        if line.startswith("--flagfile="):
          inner = line.split("=", 1)[1]
          line = "--flagfile=" + os.path.join(os.path.dirname(path), inner)
        lines.append(line)
    out += expand_flagfiles(lines, _stack + (real,))
  return out


def import_plugins(args: List[str]) -> List[str]:
  """Imports the modules of every --import=a,b in `args` (the current folder searched first),
  so that what they register (tfrewind.register_method, register_criterion,
  register_structure) is known before the flags are checked. Returns their names."""
  import importlib  # pylint: disable=g-import-not-at-top
  from tfrewind import registries  # pylint: disable=g-import-not-at-top
  names = []
  for i, arg in enumerate(args):
    if arg.startswith("--import="):
      names += [n.strip() for n in arg.split("=", 1)[1].split(",") if n.strip()]
    elif arg == "--import" and i + 1 < len(args):
      names += [n.strip() for n in args[i + 1].split(",") if n.strip()]
  if names and os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise UsageError(f"--import={name}: cannot import it ({e}): a module on PYTHONPATH or "
                       f"in the current folder") from None
  registries.IMPORTED[:] = names  # this command's: hparams.json records them
  return names


def _reader_gone() -> None:
  """`tfrewind sweep --print | head`: the reader has what it wanted. Later writes (and the
  interpreter's flush at exit) go to /dev/null instead of raising again."""
  os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(message: str, status: int = 2):
  print(f"tfrewind: error: {message}", file=sys.stderr)
  sys.exit(status)


def run_main(argv: Optional[List[str]] = None) -> None:
  """Console entry point: `tfrewind COMMAND [--flags]`."""
  argv = list(sys.argv if argv is None else argv)
  helps = {"-h", "--help", "--helpshort", "--helpfull"} & set(argv[1:])
  if helps:
    try:
      print(__doc__)
      # --helpfull adds absl's own flags (logging, ...); the others list tfrewind's.
      print(FLAGS.get_help() if "--helpfull" in helps else FLAGS.module_help(flagdefs))
    except BrokenPipeError:
      _reader_gone()
    sys.exit(0)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    got = argv[1] if len(argv) > 1 else "nothing"
    _fail(f"expected a command ({', '.join(COMMANDS)}), got {got}: e.g. "
          f"tfrewind run --flagfile=flags/quickstart.flags")
  command = argv[1]
  try:
    rest = [argv[0]] + expand_flagfiles(argv[2:])
    import_plugins(rest)  # before parsing: their entries are valid flag values
    parsed = FLAGS(rest)
  except ConfigError as e:
    _fail(str(e))
  except flags.Error as e:
    _fail(f"{e}; see tfrewind {command} --helpfull")
  if len(parsed) > 1:
    _fail(f"unexpected argument {parsed[1]!r}: flags are written --name=value")
  # INFO reaches the run folders' log.txt; the console shows warnings and errors, unless
  # --verbose=2 (TF's own INFO lines, e.g. its saver's timings, are chatter there).
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().setLevel(py_logging.INFO if FLAGS.verbose >= 2 else
                                      py_logging.WARNING)
  # TF's own Python logger may hold a handler of its own on the stderr of its import time.
  py_logging.getLogger("tensorflow").setLevel(py_logging.INFO if FLAGS.verbose >= 2 else
                                               py_logging.WARNING)
  sys.exit(_guarded_main(command))


def _guarded_main(command):
  try:
    return commands.main(command)
  except Stopped as e:
    print(f"tfrewind: {e}", file=sys.stderr)
    return 128 + e.signum
  except BrokenPipeError:
    _reader_gone()
    return 141
  except ConfigError as e:  # a bad setting; any other exception is a bug: its traceback stays
    _fail(str(e))
  except RunFailed as e:
    _fail(str(e), status=3)
  except DiskFull as e:
    _fail(e.strerror, status=1)
  except Exception as e:  # pylint: disable=broad-except
    if is_disk_full(e):  # TensorFlow's own writers (checkpoints, summaries) outside a run
      _fail(disk_full(e).strerror, status=1)
    if isinstance(e, OSError):
      _fail(f"{e.strerror or e}: {getattr(e, 'filename', '') or ''} (is the root unwritable?)",
            status=4)
    raise
