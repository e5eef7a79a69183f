"""Sharding checks on 8 fake CPU devices, run by test_sharding.py in its own process:
XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before jax is imported,
and the rest of the suite keeps one device."""

import re

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import input_pipeline
from mmoe_jax.training import trainer as trainer_lib

assert jax.device_count() == 8, 'run with XLA_FLAGS=--xla_force_host_platform_device_count=8'


def setup(tiny_config, **sharding):
  tiny_config.sharding.update(sharding)
  config = validate(tiny_config)
  columns = data_lib.load(data_lib.input_paths(config)[0], config)
  return config, columns, trainer_lib.Trainer(config, input_pipeline.batch(columns, np.arange(2)))


def train(trainer, columns, steps, state=None):
  state = trainer.create_state() if state is None else state
  for step in range(steps):
    state, metrics = trainer.train_step(state, input_pipeline.batch(columns, np.arange(64) + 64 * step))
  return state, jax.device_get(metrics)


def test_tables_are_row_sharded_over_all_devices_with_padding(tiny_config):
  config, _, trainer = setup(tiny_config)
  state = trainer.create_state()
  for name, table in state['params']['embedding'].items():
    rows = trainer.vocab_rows[name]
    padded = -(-rows // 8) * 8
    assert table.shape == (padded, 16), name
    assert table.sharding.spec == P(('data', 'model'), None), name
    assert {s.data.shape for s in table.addressable_shards} == {(padded // 8, 16)}, name
    assert not np.asarray(table)[rows:].any(), f'{name}: padding rows are zero'
    mu = state['opt_state'][0].mu['embedding'][name]
    assert mu.sharding == table.sharding, 'optimizer state follows its parameter'
  kernel = state['params']['expert_dnn']['dnn_0']['kernel']
  assert kernel.sharding.spec == P('model', None, None)  # a model axis of size 1: all whole
  assert {s.data.shape for s in kernel.addressable_shards} == {kernel.shape}
  assert any('table user_id: (100000, 16)' in line and 'per device (12500, 16)' in line
             for line in trainer.layout())


def test_expert_axis_shards_over_the_model_axis(tiny_config):
  tiny_config.model_config.mmoe.num_expert = 4
  _, _, trainer = setup(tiny_config, mesh_shape=(4, 2))
  state = trainer.create_state()
  assert state['params']['expert_dnn']['dnn_0']['kernel'].sharding.spec == P('model', None, None)
  assert state['params']['expert_dnn']['dnn_0']['bias'].sharding.spec == P('model', None)
  assert state['params']['embedding']['pid'].sharding.spec == P(('data', 'model'), None)


def test_undividable_table_without_padding_names_feature_and_fields(tiny_config):
  with pytest.raises(ValueError, match=r'feature_configs\[0\] \(pid\).*10 rows.*sharding\.vocab'
                                       r'.*sharding\.pad_vocab'):
    setup(tiny_config, pad_vocab=False)


def test_sharded_training_matches_one_device(tiny_config):
  config, columns, sharded = setup(tiny_config)
  single = trainer_lib.Trainer(validate(_with(tiny_config, mesh_shape=(1, 1))),
                             input_pipeline.batch(columns, np.arange(2)))
  a, metrics_a = train(sharded, columns, 5)
  b, metrics_b = train(single, columns, 5)
  for key in metrics_a:
    np.testing.assert_allclose(metrics_a[key], metrics_b[key], rtol=1e-5)
  flat_b = dict(jax.tree_util.tree_leaves_with_path(b['params']))
  for path, x in jax.tree_util.tree_leaves_with_path(a['params']):
    y = np.asarray(flat_b[path])
    np.testing.assert_allclose(np.asarray(x)[:y.shape[0]], y, rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))


def _with(config, **sharding):
  config = config.copy_and_resolve_references()
  config.sharding.update(sharding)
  return config


def test_compiled_step_moves_no_table_larger_than_a_batch(tiny_config):
  """No collective of the step carries a whole table of more rows than the batch.

  XLA partitions a lookup as a local gather plus an all-reduce of the [B, D] result; for
  a table smaller than that (16 rows here) it may move the table instead, the cheaper
  choice, and harmless to memory.
  """
  config, columns, trainer = setup(tiny_config)
  state = trainer.abstract_state()
  hlo = trainer.train_step.lower(state, input_pipeline.batch(columns, np.arange(64))).compile().as_text()
  tables = {tuple(t.shape) for t in state['params']['embedding'].values() if t.shape[0] > 64}
  assert (100000, 16) in tables and (104, 16) in tables
  collectives = re.findall(r'= f32\[([\d,]*)\][^ ]* (all-gather|all-reduce|reduce-scatter|'
                           r'all-to-all|collective-permute)\(', hlo)
  assert collectives, 'the step should hold collectives (the lookups all-reduce)'
  moved = {tuple(int(d) for d in shape.split(',') if d) for shape, _ in collectives}
  assert not moved & tables, f'a whole table moves between devices: {moved & tables}'


def _lazy(config):
  adam = config.train_config.optimizer_config.adam_optimizer
  config.train_config.optimizer_config = dict(lazy_adam_optimizer=adam)
  return config


def _table_moments(opt_state):
  """(table name, leaf) of every optimizer-state leaf of a table: optax Adam's mu and nu
  under <...>/embedding/<name>, or lazy Adam's."""
  return [(path[-1].key, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(opt_state)
          if len(path) > 1 and getattr(path[-2], 'key', None) == 'embedding']


@pytest.mark.parametrize('lazy', [False, True], ids=['adam', 'lazy_adam'])
def test_moments_of_every_table_are_sharded_like_the_table(tiny_config, lazy):
  _, _, trainer = setup(_lazy(tiny_config) if lazy else tiny_config)
  state = trainer.create_state()
  tables = state['params']['embedding']
  moments = _table_moments(state['opt_state'])
  assert sorted(name for name, _ in moments) == sorted(list(tables) * 2), 'mu and nu of each'
  for name, moment in moments:
    table = tables[name]
    assert moment.shape == table.shape, name
    assert moment.sharding.spec == table.sharding.spec == P(('data', 'model'), None), name
    assert ({s.data.shape for s in moment.addressable_shards}
            == {s.data.shape for s in table.addressable_shards}
            == {(table.shape[0] // 8, 16)}), name
  counts = [x for x in jax.tree.leaves(state['opt_state']) if x.ndim == 0]
  assert counts and all(c.sharding.spec == P() for c in counts)


@pytest.mark.parametrize('lazy, saved_on, restored_on', [
    (False, 8, 4), (True, 8, 4), (True, 4, 8)])
def test_checkpoint_restores_on_another_device_count(tiny_config, lazy, saved_on, restored_on):
  """Every leaf comes back equal to the saved one: tables and their moments with this
  run's zero padding rows, laid out over this run's devices."""
  tiny_config = _lazy(tiny_config) if lazy else tiny_config
  config, columns, trainer = setup(tiny_config, mesh_shape=(saved_on, 1))
  state, _ = train(trainer, columns, 2)
  saved = jax.device_get(state)
  ckpt = checkpoint_lib.Checkpointer(config.model_dir, 2)
  ckpt.save(2, state)
  ckpt.wait()
  other = trainer_lib.Trainer(validate(_with(tiny_config, mesh_shape=(restored_on, 1))),
                              input_pipeline.batch(columns, np.arange(2)))
  restored = checkpoint_lib.restore(checkpoint_lib.Checkpointer(config.model_dir, 2), other)
  assert int(restored['step']) == 2
  want = dict(jax.tree_util.tree_leaves_with_path(saved))
  resized = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(restored):
    name, got, have = jax.tree_util.keystr(path), np.asarray(leaf), want[path]
    rows = other.vocab_rows.get(getattr(path[-1], 'key', None))
    if got.ndim == 2 and rows and got.shape[1] == 16:  # a table or a moment of one
      assert got.shape[0] == -(-rows // restored_on) * restored_on, name
      assert len(leaf.sharding.device_set) == restored_on, name
      assert {s.data.shape[0] for s in leaf.addressable_shards} == {got.shape[0] // restored_on}
      np.testing.assert_array_equal(got[:rows], have[:rows], err_msg=name)
      assert not got[rows:].any(), f'{name}: padding rows are zero'
      resized += got.shape != have.shape
    else:
      np.testing.assert_array_equal(got, have, err_msg=name)
  assert resized >= 3, 'pid (10 rows) and its mu, nu are padded differently on 4 and 8'
  state, metrics = train(other, columns, 1, restored)
  assert int(state['step']) == 3 and np.isfinite(metrics['total_loss'])


def test_sweep_replicas_spread_over_devices_match_one_device(tmp_path):
  import task_correlation
  from mmoe_jax.training import sweep
  runs = [sweep.Run('tiny', seed=s, **{'synthetic.seed': s}) for s in range(8)]
  one = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'one'))
  spread = {'sharding.replica': ('data',)}
  group = sweep.ReplicaGroup([r.config(task_correlation, spread) for r in runs])
  state = group.init_state()
  kernel = jax.tree.leaves(state['params'])[0]
  assert kernel.sharding.spec[0] == 'data' and len(kernel.addressable_shards) == 8
  assert kernel.addressable_shards[0].data.shape[0] == 1  # one replica per device
  many = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'many'), spread)
  for a, b in zip(one, many):
    for metric, stats in a['metrics'].items():
      np.testing.assert_allclose(b['metrics'][metric]['mean'], stats['mean'], rtol=1e-4)
