"""Numbers of the command line: step counts with units, density lists, declared bounds.

Pure Python, so that flags, HParams and the light commands share one parser.
"""

import re
from typing import List, Optional

from tfrewind.errors import ConfigError

BOUNDS = ("min", "above", "max", "below")
# A signed count with an optional unit: the bounds check names a negative value as such.
STEPS_RE = r"\s*(-?\d+(?:\.\d+)?)\s*(it|ep)?\s*"


def bounds_text(meta) -> str:
  """'>= 1', '> 0 and <= 1', ...: a field's (or flag's) declared bounds, for help and errors."""
  ops = {"min": ">=", "above": ">", "max": "<=", "below": "<"}
  return " and ".join(f"{ops[k]} {meta[k]}" for k in BOUNDS if meta.get(k) is not None)


def out_of_bounds(number: float, meta) -> bool:
  return ((meta.get("min") is not None and number < meta["min"]) or
          (meta.get("above") is not None and number <= meta["above"]) or
          (meta.get("max") is not None and number > meta["max"]) or
          (meta.get("below") is not None and number >= meta["below"]))


def parse_steps(value, steps_per_epoch: Optional[int], name: str = "steps") -> int:
  """'8000it' -> 8000, '4ep' -> 4 * steps_per_epoch, 300 -> 300.

  Example:
    >>> parse_steps("4ep", 2000)
    8000
  """
  if isinstance(value, int) and not isinstance(value, bool):
    return value
  match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(it|ep)?\s*", str(value))
  if not match:
    raise ConfigError(f"--{name}={value!r} is not a step count: write e.g. 8000it or 4ep")
  number, unit = float(match.group(1)), match.group(2) or "it"
  if unit == "ep":
    if steps_per_epoch is None:
      raise ConfigError(f"--{name}={value!r} counts epochs, but epoch_steps is itself in epochs")
    number *= steps_per_epoch
  if number != int(number):
    raise ConfigError(f"--{name}={value!r} is not a whole number of iterations")
  return int(number)


def expand_densities(spec: str) -> List[float]:
  """'0.8^1..20' -> [0.8, 0.64, ...]; '0.5,0.25' -> [0.5, 0.25]. Derived, never pasted."""
  out = []
  for part in str(spec).split(","):
    part = part.strip()
    m = re.fullmatch(r"(\d*\.?\d+)\^(\d+)(?:\.\.(\d+))?", part)
    if m:
      base, lo = float(m.group(1)), int(m.group(2))
      hi = int(m.group(3) or lo)
      out += [base ** k for k in range(lo, hi + 1)]
    else:
      try:
        out.append(float(part))
      except ValueError:
        raise ConfigError(f"--densities: {part!r} is neither a number nor RATE^A..B") from None
  return out
