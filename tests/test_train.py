"""The training loop end to end on the tiny config: metrics, checkpoints, resume."""

import json
import logging
import os
import re
import shutil

import jax
import numpy as np
import pytest

import mmoe
from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import evaluation, input_pipeline, losses, train_lib
from mmoe_jax.training import trainer as trainer_lib


def test_batch_sampler_is_a_pure_function_of_step():
  sampler = input_pipeline.BatchSampler(num_rows=10, batch_size=4, seed=3)
  epoch0 = np.concatenate([sampler.indices(0), sampler.indices(1), sampler.indices(2)[:2]])
  assert sorted(epoch0) == list(range(10))  # every row once per epoch
  assert sorted(np.concatenate([sampler.indices(2)[2:], sampler.indices(3), sampler.indices(4)])) \
      == list(range(10))
  fresh = input_pipeline.BatchSampler(num_rows=10, batch_size=4, seed=3)
  np.testing.assert_array_equal(fresh.indices(3), sampler.indices(3))
  assert not np.array_equal(input_pipeline.BatchSampler(10, 4, seed=4).indices(0), sampler.indices(0))


def test_total_steps_uses_the_smaller_limit():
  config = validate(mmoe.get_config('tiny'))
  assert train_lib.total_steps(config, 100000) == 20
  config = mmoe.get_config('tiny')
  config.train_config.num_steps = 0
  config.data_config.num_epochs = 2
  assert train_lib.total_steps(validate(config), 100) == 2 * 2  # ceil(100 / 64) per epoch


@pytest.mark.parametrize('keep, kept', [(2, [4, 5]), (0, [1, 2, 3, 4, 5])])
def test_keep_checkpoint_max_keeps_the_newest_or_every_one(tmp_path, keep, kept):
  # EasyRec's keep_checkpoint_max goes to TF's Saver, where 0 keeps every checkpoint.
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep)
  for step in range(1, 6):
    ckpt.save(step, {'x': np.full(2, step, np.float32)})
  ckpt.wait()
  assert sorted(int(d) for d in os.listdir(ckpt.directory) if d.isdigit()) == kept


def test_second_train_step_does_not_recompile(tiny_config):
  config = validate(tiny_config)
  train_path, _ = data_lib.input_paths(config)
  columns = data_lib.load(train_path, config)
  sampler = input_pipeline.BatchSampler(columns.num_rows, 64, 0)
  trainer = trainer_lib.Trainer(config, input_pipeline.batch(columns, sampler.indices(0)))
  state = trainer.create_state()  # in the step's sharded layout, as the loop makes it
  for step in range(3):
    state, metrics = trainer.train_step(state, input_pipeline.batch(columns, sampler.indices(step)))
  jax.block_until_ready(metrics)
  assert trainer.train_step._cache_size() == 1
  assert int(state['step']) == 3


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_train_writes_metrics_checkpoints_and_resumes_exactly(tiny_config, tmp_path):
  result = train_lib.train_and_evaluate(tiny_config)
  model_dir = tiny_config.model_dir
  assert result['step'] == 20
  for key in ('auc_ctr', 'auc_cvr', 'oracle_auc_ctr', 'oracle_auc_cvr'):
    assert 0 <= result[key] <= 1
  records = read_jsonl(os.path.join(model_dir, 'metrics.jsonl'))
  assert [r['step'] for r in records] == [10, 20]
  assert records[-1]['auc_ctr'] == result['auc_ctr']
  assert sorted(os.listdir(os.path.join(model_dir, 'checkpoints'))) == ['10', '20']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(model_dir))

  # Resume to step 30 from the step-20 checkpoint ...
  tiny_config.train_config.num_steps = 30
  resumed = train_lib.train_and_evaluate(tiny_config)
  assert [r['step'] for r in read_jsonl(os.path.join(model_dir, 'metrics.jsonl'))] == [10, 20, 30]
  # ... equals 30 uninterrupted steps (same batches, same dropout keys, same optimizer).
  straight = mmoe.get_config('tiny')
  straight.model_dir = str(tmp_path / 'straight')
  straight.train_config.num_steps = 30
  uninterrupted = train_lib.train_and_evaluate(straight)
  for key in ('auc_ctr', 'auc_cvr'):
    assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6)
  a = checkpoint_lib.restore_or_fail(validate(tiny_config), _trainer(tiny_config))
  b = checkpoint_lib.restore_or_fail(validate(straight), _trainer(straight))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               a['params'], b['params'])


def _trainer(config):
  config = validate(config)
  columns = data_lib.load(data_lib.input_paths(config)[1], config)
  return trainer_lib.Trainer(config, input_pipeline.batch(columns, np.arange(2)))


def test_non_finite_loss_stops_and_names_the_step(tiny_config):
  lr = tiny_config.train_config.optimizer_config.adam_optimizer.learning_rate
  lr.exponential_decay_learning_rate.initial_learning_rate = 1e30
  with pytest.raises(FloatingPointError, match=r'total_loss (and gradient norm )?(is|are) not '
                     r'finite at step \d+'):
    train_lib.train_and_evaluate(tiny_config)
  # No checkpoint holds a non-finite state.
  ckpts = os.path.join(tiny_config.model_dir, 'checkpoints')
  assert not os.path.exists(ckpts) or os.listdir(ckpts) == []


def _save_over(model_dir, state):
  """Replaces the checkpoint of state['step'] in model_dir by `state`."""
  step = int(state['step'])
  shutil.rmtree(os.path.join(model_dir, 'checkpoints', str(step)))
  ckpt = checkpoint_lib.Checkpointer(model_dir, keep_checkpoint_max=3)
  ckpt.save(step, state)
  ckpt.wait()


def test_non_finite_gradient_with_a_finite_loss_stops_and_names_the_step(tiny_config):
  """Finite weights whose backward pass overflows float32: the first expert layer scaled by
  1e-30 keeps the forward pass finite (a finite loss), while the second expert layer
  (x 1e17), the towers and their output layers (x 1e18) multiply the gradient that reaches
  the first layer by ~1e53."""
  tiny_config.train_config.num_steps = 10
  train_lib.train_and_evaluate(tiny_config)  # checkpoint 10
  trainer = _trainer(tiny_config)
  state = checkpoint_lib.restore_or_fail(validate(tiny_config), trainer)
  params = state['params']
  params['expert_dnn']['dnn_0'] = jax.tree.map(lambda p: p * 1e-30, params['expert_dnn']['dnn_0'])
  params['expert_dnn']['dnn_1']['kernel'] *= 1e17
  for layer in ('tower_ctr', 'tower_cvr', 'output_ctr', 'output_cvr'):
    params[layer] = jax.tree.map(lambda p: p * 1e18, params[layer])
  crafted = jax.tree.map(np.asarray, state)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(crafted['params']))
  _save_over(tiny_config.model_dir, state)

  # Step 11 has a finite loss and a non-finite gradient norm; before, training went on with
  # NaN parameters and checkpointed them at step 20.
  columns = data_lib.load(data_lib.input_paths(validate(tiny_config))[0], validate(tiny_config))
  sampler = input_pipeline.BatchSampler(columns.num_rows, 64, tiny_config.seed)
  _, metrics = jax.jit(trainer.step)(crafted, input_pipeline.batch(columns, sampler.indices(10)))
  assert np.isfinite(metrics['total_loss'])
  assert not np.isfinite(metrics[trainer_lib.GRADIENT_NORM])

  tiny_config.train_config.num_steps = 20
  with pytest.raises(FloatingPointError,
                     match=r'^gradient norm is not finite at step 11; .*checkpoint \(step 10\)'):
    train_lib.train_and_evaluate(tiny_config)
  assert sorted(os.listdir(os.path.join(tiny_config.model_dir, 'checkpoints'))) == ['10']
  kept = checkpoint_lib.restore_or_fail(validate(tiny_config), _trainer(tiny_config))
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, kept['params']),
               crafted['params'])


def test_gradient_norm_is_logged_and_lazy_adam_gives_dense_adams(tiny_config):
  """global_norm/gradient_norm is the norm of the gradient of every parameter, tables whole;
  lazy Adam, which differentiates looked-up rows, must report the same number."""
  config = validate(tiny_config)
  columns = data_lib.load(data_lib.input_paths(config)[0], config)
  batch = input_pipeline.batch(columns, np.arange(64))
  trainer = trainer_lib.Trainer(config, batch)
  state = trainer.init_state()

  def loss(params):
    (logits, aux) = trainer.model.apply({'params': params}, batch['features'], train=True,
                                        rngs={'dropout': jax.random.PRNGKey(0)})
    return losses.total_loss(logits, aux, params, trainer.param_axes, batch['labels'],
                             trainer.towers, trainer.l2_regularization,
                             config.model_config.embedding_regularization)[0]

  grads = jax.grad(loss)(state['params'])
  want = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in jax.tree.leaves(grads)))
  _, metrics = jax.jit(trainer.step)(state, batch)
  np.testing.assert_allclose(metrics[trainer_lib.GRADIENT_NORM], want, rtol=1e-4)
  lazy = mmoe.get_config('tiny,lazy_adam')
  lazy.model_dir = tiny_config.model_dir
  lazy_trainer = trainer_lib.Trainer(validate(lazy), batch)
  _, lazy_metrics = jax.jit(lazy_trainer.step)(lazy_trainer.init_state(), batch)
  np.testing.assert_allclose(lazy_metrics[trainer_lib.GRADIENT_NORM], want, rtol=1e-4)


def test_a_finite_exploding_loss_warns_once_with_step_and_values(tiny_config, caplog):
  lr = tiny_config.train_config.optimizer_config.adam_optimizer.learning_rate
  lr.exponential_decay_learning_rate.initial_learning_rate = 100.0
  tiny_config.train_config.num_steps = 10
  with caplog.at_level(logging.WARNING, logger='mmoe_jax'):
    result = train_lib.train_and_evaluate(tiny_config)
  assert result['step'] == 10  # a warning, not an error
  warned = [r.getMessage() for r in caplog.records if 'diverged' in r.getMessage()]
  assert len(warned) == 1, warned
  # Two binary towers of weight 1: all-zero logits lose 2 log 2.
  match = re.match(r'total_loss (\S+) at step (5|10) is over 100 x (\S+),', warned[0])
  assert match, warned[0]
  assert float(match.group(1)) > 100 * 2 * np.log(2)
  assert float(match.group(3)) == pytest.approx(2 * np.log(2), rel=1e-4)


def test_an_evaluation_lost_to_a_kill_is_redone_on_resume(tiny_config, caplog):
  tiny_config.train_config.num_steps = 10
  train_lib.train_and_evaluate(tiny_config)
  metrics = os.path.join(tiny_config.model_dir, 'metrics.jsonl')
  assert [r['step'] for r in read_jsonl(metrics)] == [10]
  os.remove(metrics)  # killed after saving checkpoint 10, before evaluating it
  tiny_config.train_config.num_steps = 20
  with caplog.at_level(logging.INFO, logger='mmoe_jax'):
    train_lib.train_and_evaluate(tiny_config)
  assert [r['step'] for r in read_jsonl(metrics)] == [10, 20]
  assert any('step-10 checkpoint, whose evaluation is missing' in r.getMessage()
             for r in caplog.records)
  # The redone evaluation is the checkpoint's: the same as evaluating it afresh.
  first = read_jsonl(metrics)[0]
  shutil.rmtree(os.path.join(tiny_config.model_dir, 'checkpoints', '20'))
  again = evaluation.evaluate_checkpoint(tiny_config)
  assert again['step'] == 10
  for key in ('auc_ctr', 'auc_cvr'):
    assert first[key] == pytest.approx(again[key], abs=1e-9)


def test_learns_the_teacher_on_generated_data(tmp_path):
  """A small MMoE gets most of the way from chance to the teacher's AUC on both tasks."""
  config = mmoe.get_config('tiny')
  config.model_dir = str(tmp_path / 'model')
  config.synthetic.train_rows, config.synthetic.eval_rows = 60000, 20000
  config.train_config.num_steps = 600
  config.train_config.save_checkpoints_steps = 600
  config.train_config.log_step_count_steps = 100
  config.data_config.batch_size = 256
  config.model_config.mmoe.expert_dnn.hidden_units = (64, 32)
  for feature in config.feature_configs:  # small tables: fast steps, few unseen rows
    feature.hash_bucket_size = min(feature.hash_bucket_size, 5000)
  result = train_lib.train_and_evaluate(config)
  for tower in ('ctr', 'cvr'):
    oracle, learned = result[f'oracle_auc_{tower}'], result[f'auc_{tower}']
    assert learned > 0.5 + 0.6 * (oracle - 0.5), result
