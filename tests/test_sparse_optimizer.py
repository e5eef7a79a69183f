"""lazy_adam_optimizer: dense Adam on rows every step touches; other rows stay as they are."""

import jax
import numpy as np
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.training import input_pipeline
from mmoe_jax.training import trainer as trainer_lib


def _lazy(config):
  adam = config.train_config.optimizer_config.adam_optimizer
  config.train_config.optimizer_config = dict(lazy_adam_optimizer=adam)
  return config


def _trainer_and_batches(config, steps):
  config = validate(config)
  columns = data_lib.load(data_lib.input_paths(config)[0], config)
  sampler = input_pipeline.BatchSampler(columns.num_rows, config.data_config.batch_size, 0)
  batches = [input_pipeline.batch(columns, sampler.indices(s)) for s in steps]
  return trainer_lib.Trainer(config, batches[0]), batches


def _train(trainer, batches):
  state = trainer.init_state()
  for b in batches:
    state, _ = trainer.train_step(state, b)
  return jax.device_get(state)


def _touched(batch, feature):
  ids = np.asarray(batch['features'][feature]).reshape(-1)
  return np.unique(ids[ids >= 0])


@pytest.mark.parametrize('clip', [0.0, 0.05])  # 0.05: every step's gradients are clipped
def test_lazy_adam_equals_adam_on_rows_every_step_touches(tiny_config, clip):
  tiny_config.train_config.gradient_clipping_by_norm = clip
  dense, batches = _trainer_and_batches(tiny_config, [0, 0, 0])  # one batch, three times
  lazy, _ = _trainer_and_batches(_lazy(tiny_config), [0])
  # Lazy tables by their path in the params: the Embedding module's, by embedding_name.
  tables = {path[-1]: names for path, names in lazy.optimizer.tables.items()
            if path[:-1] == ('embedding',)}
  assert len(tables) == len(lazy.optimizer.tables)
  assert 'user_id' in tables and 'tag_brand_list' in tables
  a, b = _train(dense, batches), _train(lazy, batches)
  init = jax.device_get(lazy.init_state())
  for name, table in b['params']['embedding'].items():
    if name not in tables:  # a table lazy Adam leaves to dense Adam
      np.testing.assert_allclose(table, a['params']['embedding'][name], rtol=1e-5, atol=1e-7)
      continue
    rows = np.unique(np.concatenate([_touched(batches[0], f) for f in tables[name]]))
    untouched = np.setdiff1d(np.arange(table.shape[0]), rows)
    np.testing.assert_allclose(table[rows], a['params']['embedding'][name][rows],
                               rtol=1e-5, atol=1e-7)
    assert np.all(table[rows] != init['params']['embedding'][name][rows])
    np.testing.assert_array_equal(table[untouched], init['params']['embedding'][name][untouched])
    assert not np.any(b['opt_state']['mu']['embedding'][name][untouched])
  others = lambda p: {k: v for k, v in p.items() if k != 'embedding'}
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               others(b['params']), others(a['params']))


def test_lazy_adam_leaves_rows_of_other_batches_alone(tiny_config):
  """Unlike dense Adam, whose momentum keeps moving a row after its batch has passed."""
  dense, batches = _trainer_and_batches(tiny_config, [0, 1])
  lazy, _ = _trainer_and_batches(_lazy(tiny_config), [0])
  only_first = np.setdiff1d(_touched(batches[0], 'user_id'), _touched(batches[1], 'user_id'))
  assert len(only_first)
  after_one = {name: _train(t, batches[:1])['params']['embedding']['user_id'][only_first]
               for name, t in (('dense', dense), ('lazy', lazy))}
  after_two = {name: _train(t, batches)['params']['embedding']['user_id'][only_first]
               for name, t in (('dense', dense), ('lazy', lazy))}
  np.testing.assert_array_equal(after_two['lazy'], after_one['lazy'])
  assert np.all(after_two['dense'] != after_one['dense'])
