"""`python sigterm_at.py ARGS`: `tfrewind ARGS`, sending itself $SIGNAL (TERM, the default, or
KILL) inside fit() when the optimizer reaches step $SIGNAL_AT, $SIGNAL_TIMES times in a row:
a pre-emption (or a kill -9) at an exact step, with no timing in the test."""

import os
import signal
import sys

from tfrewind import callbacks, cli

STEPS = {int(s) for s in os.environ.get("SIGNAL_AT", "").split(",") if s}
SIGNAL = getattr(signal, "SIG" + os.environ.get("SIGNAL", "TERM"))
TIMES = int(os.environ.get("SIGNAL_TIMES", "1"))
_original = callbacks.StopOnSignal.on_train_batch_end


def _on_train_batch_end(self, batch, logs=None):
  step = int(self.model.optimizer.iterations.numpy())
  if step in STEPS:
    STEPS.discard(step)
    for _ in range(TIMES):
      os.kill(os.getpid(), SIGNAL)
  _original(self, batch, logs)


callbacks.StopOnSignal.on_train_batch_end = _on_train_batch_end
cli.run_main(["tfrewind"] + sys.argv[1:])
