"""The loop cadence shared by train.py and sweeps: when they log and checkpoint, and the
checks they make there (non-finite steps, diverging losses)."""

import json
import logging
import os
import re
import types

import numpy as np
import pytest

import task_correlation
from mmoe_jax.training import cadence, sweep, train_lib


def test_events_fall_on_the_intervals_and_the_last_step():
  train_config = types.SimpleNamespace(log_step_count_steps=5, save_checkpoints_steps=10)
  steps = cadence.Cadence(train_config, num_steps=23)
  assert {s: steps.events(s) for s in range(1, 24) if steps.events(s)} == {
      5: {'log'}, 10: {'log', 'save'}, 15: {'log'}, 20: {'log', 'save'}, 23: {'log', 'save'}}


def test_dispatches_end_on_multiples_of_k_from_any_start():
  assert list(cadence.dispatches(0, 12, 5)) == [range(0, 5), range(5, 10), range(10, 12)]
  # Resumed from a final step that is no multiple of k: back on the multiples at once.
  assert list(cadence.dispatches(12, 30, 5)) == [range(12, 15), range(15, 20), range(20, 25),
                                                 range(25, 30)]
  assert list(cadence.dispatches(30, 30, 5)) == []


def _tower(loss_type='CLASSIFICATION', num_class=1, weight=1.0, label_name='y'):
  return types.SimpleNamespace(loss_type=loss_type, num_class=num_class, weight=weight,
                               label_name=label_name)


def test_zero_logit_loss_is_an_untrained_models():
  # Sigmoid cross entropy at logit 0 is log 2 whatever the label; softmax over C classes
  # at equal logits is log C; squared error of predicting 0 is mean(label^2).
  towers = [_tower(), _tower(num_class=3, weight=0.5),
            _tower('L2_LOSS', weight=2.0, label_name='r')]
  labels = {'y': np.array([0, 1, 1]), 'r': np.array([1.0, 2.0, 3.0])}
  assert cadence.zero_logit_loss(towers, labels) == pytest.approx(
      np.log(2) + 0.5 * np.log(3) + 2.0 * 14 / 3)
  per_replica = {'r': np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])}  # [R, N]
  np.testing.assert_allclose(cadence.zero_logit_loss(towers[2:], per_replica), [28 / 3, 6.0],
                             rtol=1e-6)


def test_divergence_warns_once_per_replica(caplog):
  watch = cadence.DivergenceWarning([_tower()], {'y': np.array([0, 1])})
  with caplog.at_level(logging.WARNING, logger='mmoe_jax'):
    watch.check(5, [69.0, 70.0, np.nan], name='000_g')  # the bound: 100 log 2 = 69.3
    watch.check(10, [1e33, 1e33, np.nan], name='000_g')
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 2, messages
  assert messages[0].startswith('000_g replica 1: total_loss 70 at step 5 is over 100 x 0.69315,')
  assert messages[1].startswith('000_g replica 0: total_loss 1e+33 at step 10')


def _sweep_steps(caplog):
  """The steps of the sweep's training log lines, in order."""
  return [int(m.group(1)) for r in caplog.records
          for m in [re.search(r' step (\d+): total_loss mean', r.getMessage())] if m]


def test_a_resumed_sweep_logs_and_saves_on_the_cadence(tmp_path, caplog):
  """Resumed from a final step that is no multiple of the intervals (12), a sweep still logs
  and checkpoints on their multiples, as train.py does; it used to step 12, 17, 22... and
  log and save only at the end."""
  runs = [sweep.Run('tiny', seed=0)]
  common = {'train_config.log_step_count_steps': 5, 'train_config.save_checkpoints_steps': 10,
            'train_config.keep_checkpoint_max': 10}
  workdir = str(tmp_path / 'sweep')
  sweep.run_sweep(task_correlation, runs, workdir, {**common, 'train_config.num_steps': 12})
  (group,) = [d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))]
  os.remove(os.path.join(workdir, group, 'results.jsonl'))  # not finished
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='mmoe_jax'):
    sweep.run_sweep(task_correlation, runs, workdir, {**common, 'train_config.num_steps': 30})
  assert _sweep_steps(caplog) == [15, 20, 25, 30]
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, group, 'checkpoints'))
                 if s.isdigit())
  assert saved == [10, 12, 20, 30]


def test_a_diverged_replica_is_named_and_recorded_as_train_py_stops(tmp_path, caplog):
  lr = sweep.LEARNING_RATE_FIELDS[0]  # constant_learning_rate.learning_rate
  runs = [sweep.Run('tiny', seed=0), sweep.Run('tiny', seed=1, **{lr: 1e30})]
  workdir = str(tmp_path / 'sweep')
  with caplog.at_level(logging.WARNING, logger='mmoe_jax'):
    sweep.run_sweep(task_correlation, runs, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]
  assert rows[0]['nonfinite_step'] is None and rows[0]['nonfinite'] is None
  assert np.isfinite(rows[0]['train_total_loss'])
  step, what = rows[1]['nonfinite_step'], rows[1]['nonfinite']
  assert step >= 1 and what in ('total_loss', 'gradient norm', 'total_loss and gradient norm')
  said = cadence.nonfinite_message(step, what)
  assert any(f'replica 1: {said}' in r.getMessage() for r in caplog.records)
  # The same run alone stops at the same step, for the same reason.
  config = runs[1].config(task_correlation, {'model_dir': str(tmp_path / 'alone')})
  with pytest.raises(FloatingPointError, match=f'^{said};'):
    train_lib.train_and_evaluate(config)
