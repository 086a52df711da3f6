"""Run under mpiexec: ``nprnn train`` where rank 1 alone fails, during setup or at step 7.

``train_fail.py setup|step OUT [options]``. ``setup``: rank 1's data preparation raises
a DataError (rank 0's succeeds); ``step``: rank 1's 7th forward/backward raises."""

import sys

import nprnn.distributed as dist
from nprnn.app import cli, lm, lmcli
from nprnn.app.errors import DataError

where, out, *rest = sys.argv[1:]
forward, prepare = lm.LMObjective.loss_and_grad, lmcli.prepare
calls = [0]


def failing_step(self, batch, carry):
    calls[0] += 1
    if dist.rank() == 1 and calls[0] == 7:
        raise ValueError("injected failure at step 7")
    return forward(self, batch, carry)


def failing_prepare(**kw):
    if dist.rank() == 1:
        raise DataError("injected setup failure", "nothing to do")
    return prepare(**kw)


if where == "step":
    lm.LMObjective.loss_and_grad = failing_step
else:
    lmcli.prepare = failing_prepare
sys.exit(cli.main(["train", "--out", out, *rest]))
