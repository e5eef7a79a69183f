"""When the training loops act, and what they check there: one cadence for
`train_lib.train_and_evaluate` and for sweeps.

Steps run in chunks (`dispatches`); after a chunk that ends on a multiple of
log_step_count_steps the loop logs, after one that ends on a multiple of
save_checkpoints_steps it checkpoints (and train.py evaluates), and the last step does
both. At each of these boundaries the loop checks the state: a step whose total_loss or
gradient norm was not finite (recorded by `Trainer.step`, so no step waits on the host)
stops a run before anything is saved, and a loss far above an untrained model's warns.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger('mmoe_jax')

# Bits of the state's `nonfinite`: what was not finite at its `nonfinite_step`.
NONFINITE = ('total_loss', 'gradient norm')
# A total_loss above this many times the loss of all-zero logits warns.
DIVERGED_FACTOR = 100


def dispatches(start, stop, k):
  """The ranges of steps from `start` to `stop`, each ending on a multiple of k (or at
  stop): with k dividing both intervals (validate), every log and save step ends one."""
  while start < stop:
    end = min((start // k + 1) * k, stop)
    yield range(start, end)
    start = end


class Cadence:
  """Which of 'log' and 'save' are due once `step` steps are done."""

  def __init__(self, train_config, num_steps):
    self.log_every = train_config.log_step_count_steps
    self.save_every = train_config.save_checkpoints_steps
    self.num_steps = num_steps

  def events(self, step):
    last = step == self.num_steps
    return ({'log'} if last or step % self.log_every == 0 else set()) | (
        {'save'} if last or step % self.save_every == 0 else set())


def describe(bits):
  """'total_loss', 'gradient norm' or both, from the bits of a state's `nonfinite`."""
  return ' and '.join(name for i, name in enumerate(NONFINITE) if int(bits) >> i & 1)


def nonfinite(state):
  """{run: (step, what)} for each run of `state` that met a non-finite step: run 0 for a
  single run, the replica index for a sweep's state. step counts from 1, as the logs do
  (nonfinite_step counts from 0)."""
  steps, bits = jax.device_get((state['nonfinite_step'], state['nonfinite']))
  return {r: (int(s) + 1, describe(b)) for r, (s, b) in
          enumerate(zip(np.atleast_1d(steps), np.atleast_1d(bits))) if s >= 0}


def nonfinite_message(step, what):
  verb = 'are' if ' and ' in what else 'is'
  return f'{what} {verb} not finite at step {step}'


def zero_logit_loss(towers, labels):
  """The task loss of all-zero logits, i.e. of an untrained model: log(num_class) per
  classification tower (log 2 when binary), mean(label^2) per L2_LOSS tower, times the
  tower weights. labels: {label name: [..., N]} (a leading replica axis gives one per
  replica)."""
  total = 0.0
  for tower in towers:
    if tower.loss_type == 'L2_LOSS':  # on the host or the device, where the labels are
      label = labels[tower.label_name]
      xp = np if isinstance(label, np.ndarray) else jnp
      loss = jax.device_get(xp.mean(xp.square(label.astype(np.float32)), axis=-1))
    else:
      loss = np.log(max(tower.num_class, 2))
    total = total + tower.weight * loss
  return total


class DivergenceWarning:
  """Warns once per run when total_loss exceeds DIVERGED_FACTOR x the loss of all-zero
  logits: a finite loss that large (say 1e33) means training diverged, though nothing is
  NaN yet."""

  def __init__(self, towers, labels):
    self.baseline = zero_logit_loss(towers, labels)
    self.warned = set()

  def check(self, step, total_loss, name=''):
    """total_loss: a scalar, or one per replica; name (a sweep group's) starts the message."""
    losses = np.atleast_1d(np.asarray(total_loss, np.float64))
    baselines = np.broadcast_to(self.baseline, losses.shape)
    for r, (loss, base) in enumerate(zip(losses, baselines)):
      if r in self.warned or not base > 0 or not loss > DIVERGED_FACTOR * base:
        continue
      self.warned.add(r)
      who = ' '.join(filter(None, (name, f'replica {r}' if np.ndim(total_loss) else '')))
      log.warning('%stotal_loss %.5g at step %d is over %d x %.5g, the loss of all-zero '
                  'logits (an untrained model): training has likely diverged. Lower the '
                  'learning rate or set train_config.gradient_clipping_by_norm.',
                  who and who + ': ', loss, step, DIVERGED_FACTOR, base)
