"""For tests/test_launch.py, on PYTHONPATH of a sweep's processes: a `python -m tfrewind run`
process whose arguments contain $SIGNAL_IF kills itself (-9) when the optimizer reaches step
$SIGNAL_AT, once: a line of the local executor dying at an exact step, with no timing."""

import os
import sys

if os.environ.get("SIGNAL_AT") and sys.argv[1:2] == ["run"] and os.environ.get(
    "SIGNAL_IF", "") in " ".join(sys.argv):
  import signal  # pylint: disable=g-import-not-at-top
  from tfrewind import callbacks  # pylint: disable=g-import-not-at-top

  _AT = int(os.environ["SIGNAL_AT"])
  _original = callbacks.StopOnSignal.on_train_batch_end

  def _on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == _AT:
      os.kill(os.getpid(), signal.SIGKILL)
    _original(self, batch, logs)

  callbacks.StopOnSignal.on_train_batch_end = _on_train_batch_end
