"""A sweep's replicas spread over 8 fake CPU devices (sharding.replica), run by test_sweep.py
in its own process: XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before
jax is imported. The data is placed once with an explicit sharding, so a dispatch moves
nothing (jax.transfer_guard('disallow') lets only explicit transfers through)."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import task_correlation
from mmoe_jax.training import sweep

assert jax.device_count() == 8, 'run with XLA_FLAGS=--xla_force_host_platform_device_count=8'


@pytest.mark.parametrize('data_seeds', [False, True])
def test_data_is_placed_once_and_dispatches_move_nothing(data_seeds):
  runs = [sweep.Run('tiny', seed=s, **({'synthetic.seed': s} if data_seeds else {}))
          for s in range(8)]
  (_, members), = sweep.group_runs(task_correlation, runs, {'sharding.replica': ('data',)})
  group = sweep.ReplicaGroup([config for _, config in members])
  assert group.shared_data != data_seeds
  # Shared data: whole on every device; per-replica data: each device holds its replica's.
  expected = NamedSharding(group.trainer.mesh, P('data') if data_seeds else P())
  for array in jax.tree.leaves((group.train, group.eval)):
    assert array.sharding.is_equivalent_to(expected, array.ndim), array.sharding
    assert len(array.sharding.device_set) == 8
  with jax.transfer_guard('disallow'):
    state = group.init_state()
    state, metrics = group.run_steps(state, group.train, group.indices(0, 5))
    results = group.evaluate(state)
  assert np.isfinite(jax.device_get(metrics['total_loss'])).all()
  assert len(results) == 8
