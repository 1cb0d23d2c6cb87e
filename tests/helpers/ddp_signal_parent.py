"""``wiseale`` as a torchrun worker whose rank 0, after batch $SIGNAL_AT_STEP of the second
epoch, sends SIGTERM to torchrun (its parent), which passes it on to every worker; once rank
0 has it, rank 0 sends itself a second one (as a scheduler that signals every process
would). The run then stops after that batch.

Run by tests/test_distributed.py as ``torchrun ... THIS train ...``.
"""

import os
import signal
import sys
import time

from wiseale.cli import main
from wiseale.training import loop

real_step, at_step = loop._train_step, int(os.environ["SIGNAL_AT_STEP"])


def step_then_signal(run, batches, state, watch, step, run_step):
    parts = real_step(run, batches, state, watch, step, run_step)
    if run.world.main and state.epoch == 1 and step == at_step:
        stop_signals = signal.getsignal(signal.SIGTERM).__self__  # the loop's StopSignals
        os.kill(os.getppid(), signal.SIGTERM)
        deadline = time.monotonic() + 60
        while stop_signals.signum is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # its handler runs here
    return parts


loop._train_step = step_then_signal
sys.exit(main(sys.argv[1:]))
