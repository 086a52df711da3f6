"""``nprnn train --procs 2`` where the worker (not rank 0) fails at its 7th step.

``worker_fail.py value|bug OUT [options]``: ``value`` raises a ValueError (an error the
CLI reports in one line, exit 2), ``bug`` a RuntimeError (one it does not expect: a
traceback from the worker, then the one line, exit 1). The worker is a fork of this
process, so it is the one whose pid differs from the command's own."""

import os
import sys

from nprnn.app import cli, lm

kind, out, *rest = sys.argv[1:]
forward, main_pid = lm.LMObjective.loss_and_grad, os.getpid()
calls = [0]


def failing_step(self, batch, carry):
    calls[0] += 1
    if os.getpid() != main_pid and calls[0] == 7:
        raise (ValueError if kind == "value" else RuntimeError)("injected failure at step 7")
    return forward(self, batch, carry)


lm.LMObjective.loss_and_grad = failing_step
sys.exit(cli.main(["train", "--out", out, *rest]))
