"""How batches reach the train step: device-resident or streaming (data_config.input_mode).

Both feed the step exactly the batches of `BatchSampler`, a pure function of (seed,
step), so the two modes, and a resumed run, follow the same trajectory.

- device: the columnar cache is put on the device once; each dispatch sends only the
  row indices of `steps_per_dispatch` steps, and one jitted `lax.scan` gathers every
  batch and runs the steps, so the host neither builds batches nor waits per step.
- streaming: a background thread builds each host batch (numpy gathers from the cache)
  and transfers it while earlier steps run, `buffer_size` batches ahead.

'auto' picks device when the cache takes at most half the device memory (on a CPU, of
the host memory): the rest is for parameters, optimizer state and activations.
"""

import functools
import logging
import math
import os
import queue
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import sharding as sharding_lib
from mmoe_jax.training import cadence

MAX_STEPS_PER_DISPATCH = 100  # bounds the [K, B] index array sent with each dispatch


def batch(columns, indices):
  """A host batch: {'features': {name: array}, 'labels': {name: array}}."""
  rows = columns.take(indices)
  return dict(features=rows.features, labels=rows.labels)


class BatchSampler:
  """Row indices of the batch at any step, a pure function of (seed, step).

  Each epoch is a fresh permutation (seeded by the epoch number), and batches run
  across epoch boundaries, so a resumed run sees exactly the batches that an
  uninterrupted run would have. `seed` is an int, or a tuple of ints (file_shard: (seed,
  process index), each process shuffling its own rows).
  """

  def __init__(self, num_rows, batch_size, seed, shuffle=True):
    self.num_rows, self.batch_size, self.seed, self.shuffle = num_rows, batch_size, seed, shuffle
    self._epoch, self._perm = None, None

  def _permutation(self, epoch):
    if epoch != self._epoch:
      self._epoch = epoch
      seeds = self.seed if isinstance(self.seed, tuple) else (self.seed,)
      self._perm = (np.random.default_rng((*seeds, epoch)).permutation(self.num_rows)
                    if self.shuffle else np.arange(self.num_rows))
    return self._perm

  def indices(self, step, num_steps=None):
    """The batch of `step` [batch_size], or of num_steps steps from it [num_steps, batch_size]."""
    count = 1 if num_steps is None else num_steps
    positions = np.arange(step * self.batch_size, (step + count) * self.batch_size)
    epochs, offsets = np.divmod(positions, self.num_rows)
    out = np.empty(positions.size, dtype=np.int64)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self._permutation(int(epoch))[offsets[sel]]
    return out if num_steps is None else out.reshape(count, self.batch_size)


def nbytes(columns):
  return sum(a.nbytes for a in (*columns.features.values(), *columns.labels.values()))


def device_memory_bytes(device=None):
  """The device's memory; a CPU device reports none, so the host's physical memory."""
  stats = (device or jax.local_devices()[0]).memory_stats() or {}
  if 'bytes_limit' in stats:
    return stats['bytes_limit']
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def resolve_mode(input_mode, columns):
  """data_config.input_mode with 'auto' resolved to 'device' or 'streaming' (logged, with
  the sizes that decided it)."""
  if input_mode != 'auto':
    return input_mode
  size, budget = nbytes(columns), device_memory_bytes() // 2
  mode = 'device' if size <= budget else 'streaming'
  logging.getLogger('mmoe_jax').info(
      'input_mode auto: %s (the training cache takes %.2f GB; the device budget is %.2f GB, '
      'half the device memory)', mode, size / 1e9, budget / 1e9)
  return mode


def steps_per_dispatch(train_config):
  """train_config.steps_per_dispatch, or (0) the largest divisor of the log and
  checkpoint intervals up to MAX_STEPS_PER_DISPATCH: every log and save step then ends
  a dispatch."""
  if train_config.steps_per_dispatch:
    return train_config.steps_per_dispatch
  both = math.gcd(train_config.log_step_count_steps, train_config.save_checkpoints_steps)
  return max(k for k in range(1, min(both, MAX_STEPS_PER_DISPATCH) + 1) if both % k == 0)


def make(config, trainer, columns, sampler):
  """The train input of `config`: DeviceResident or Streaming.

  On a mesh of several devices, or several processes, batches stream: each process builds
  its rows of every global batch, laid out as the batch sharding says (training over a
  sharded device-resident cache is not implemented yet). Under file_shard with several
  processes `sampler` draws this process's rows of each batch from its own files.
  """
  mode = resolve_mode(config.data_config.input_mode, columns)
  if mode == 'device' and (jax.process_count() > 1 or trainer.mesh.size > 1):
    if config.data_config.input_mode == 'device':
      raise ValueError("data_config.input_mode: 'device' needs a one-device mesh; use "
                       "'streaming' or 'auto' on several devices or processes")
    mode = 'streaming'
  if mode == 'device':
    return DeviceResident(trainer, columns, sampler, steps_per_dispatch(config.train_config))
  return Streaming(trainer, columns, sampler, config.data_config.batch_size)


def gather(data, rows):
  """The batch of `rows` of device-resident columns."""
  return jax.tree.map(lambda column: jnp.take(column, rows, axis=0), data)


def scan_steps(step, state, data, indices):
  """step(state, data, indices[i]) for each i, in one lax.scan; the last step's metrics.

  `step` gathers its batch from `data` (see gather), so the same scan serves a single run
  and a vmapped sweep, whose rows carry a replica axis.
  """
  state, metrics = jax.lax.scan(lambda state, idx: step(state, data, idx), state, indices)
  return state, jax.tree.map(lambda m: m[-1], metrics)


class DeviceResident:
  """Training rows on the device; `run` does a chunk of steps in one dispatch.

  The loop asks `chunks(start, stop)` for ranges of steps and `run`s each: ranges end
  at multiples of steps_per_dispatch (and at stop), so a log or checkpoint step always
  ends one. A shorter range (a resumed or final remainder) compiles once more.
  """
  mode = 'device'

  def __init__(self, trainer, columns, sampler, steps_per_dispatch):
    self.sampler, self.steps_per_dispatch = sampler, steps_per_dispatch
    # Placed explicitly on the (one-device) mesh, the data once and the indices with each
    # dispatch: no implicit transfer (the tests run this under jax.transfer_guard).
    self.sharding = NamedSharding(trainer.mesh, P())
    self.data = jax.device_put(columns.arrays(),
                               self.sharding)
    step = lambda state, data, rows: trainer.step(state, gather(data, rows))
    self._run = jax.jit(functools.partial(scan_steps, step), donate_argnums=0)

  def chunks(self, start, stop):
    return cadence.dispatches(start, stop, self.steps_per_dispatch)

  def indices(self, steps):
    return jax.device_put(self.sampler.indices(steps.start, len(steps)).astype(np.int32),
                          self.sharding)

  def run(self, state, steps):
    return self._run(state, self.data, self.indices(steps))

  def close(self):
    pass


class Streaming:
  """Host batches built and transferred by a background thread, buffer_size ahead.

  `chunks(start, stop)` starts the thread for those steps; `run` takes the next
  transferred batch (waiting only when the host falls behind) and runs one jitted step.
  """
  mode = 'streaming'

  def __init__(self, trainer, columns, sampler, batch_size=None, buffer_size=2):
    self.trainer, self.columns, self.sampler = trainer, columns, sampler
    batch_size = batch_size or sampler.batch_size  # the global batch
    self.batch_size, self.buffer_size = batch_size, buffer_size
    # Each process builds only the rows of every global batch that its devices hold: those
    # rows of the global sampler's batch, or (file_shard) all of its own sampler's.
    self.rows = sharding_lib.process_rows(trainer.batch_sharding, batch_size)
    if sampler.batch_size != batch_size:
      held = self.rows.stop - self.rows.start
      if held != sampler.batch_size:
        raise ValueError(f'data_config.file_shard: this process holds {held} rows of each batch '
                         f'of {batch_size}, not its share of {sampler.batch_size}')
      self.rows = slice(None)
    self._thread, self._stop = None, threading.Event()

  def chunks(self, start, stop):
    self.close()
    self._queue = queue.Queue(maxsize=self.buffer_size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._produce, args=(start, stop), daemon=True,
                                    name='mmoe_jax-input')
    self._thread.start()
    return (range(step, step + 1) for step in range(start, stop))

  def _produce(self, start, stop):
    try:
      for step in range(start, stop):
        host = batch(self.columns, self.sampler.indices(step)[self.rows])
        if not self._put((step, sharding_lib.global_batch(host, self.trainer.batch_sharding,
                                                          self.batch_size))):
          return
    except Exception as e:  # pylint: disable=broad-except
      self._put((None, e))  # re-raised by `next_batch` in the training thread

  def _put(self, item):
    """Waits for room in the buffer; False once `close` was called."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def next_batch(self, step):
    got, value = self._queue.get()
    if got is None:
      raise value
    assert got == step, (got, step)
    return value

  def run(self, state, steps):
    (step,) = steps
    return self.trainer.train_step(state, self.next_batch(step))

  def close(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
