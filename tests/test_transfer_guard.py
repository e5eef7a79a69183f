"""The hot paths move no data behind the code's back: the train loop in both input modes,
evaluation, and a sweep's step and evaluation run under jax.transfer_guard('disallow'),
which lets through only explicit transfers (device_put, device_get)."""

import logging

import jax
import numpy as np
import pytest

import mmoe
from mmoe_jax.training import sweep, train_lib


@pytest.mark.parametrize('mode', ['device', 'streaming'])
def test_train_loop_and_evaluation(tiny_config, mode, caplog):
  tiny_config.data_config.input_mode = mode
  with caplog.at_level(logging.INFO, logger='mmoe_jax'), jax.transfer_guard('disallow'):
    result = train_lib.train_and_evaluate(tiny_config)  # evaluates at steps 10 and 20
  assert f'input_mode {mode}' in caplog.messages
  assert result['step'] == 20 and 0 < result['auc_ctr'] < 1


def test_sweep_step_and_evaluation(tmp_path):
  runs = [sweep.Run('tiny', seed=s) for s in range(2)]  # one dataset, shared
  (_, members), = sweep.group_runs(mmoe, runs, {'model_dir': str(tmp_path)})
  group = sweep.ReplicaGroup([config for _, config in members])
  assert group.shared_data
  with jax.transfer_guard('disallow'):
    state = group.init_state()
    for step in (0, 5):
      state, metrics = group.run_steps(state, group.train, group.indices(step, 5))
    results = group.evaluate(state)
  np.testing.assert_array_equal(jax.device_get(state['step']), [10, 10])
  assert np.isfinite(jax.device_get(metrics['total_loss'])).all()
  assert len(results) == 2 and all(0 < r['auc_ctr'] < 1 for r in results)
