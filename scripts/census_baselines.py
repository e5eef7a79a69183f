r"""Logistic regression on one-hot Census-Income features: the bar MMoE should clear.

Reads the same tfds splits, the same features and the same numeric buckets as
configs/census.py: every input is one-hot (each feature's id or bucket one-hot, all
features side by side), and each task of a group gets its own logistic regression, fit
full-batch by L-BFGS on the train split for every L2 strength in --l2, the strength with
the best validation AUC kept. Prints one JSON line per (group, task) with its test AUC.
(No gradient-boosted trees: scikit-learn and friends are not dependencies.)

  python scripts/census_baselines.py                      # groups 1 and 2
  python scripts/census_baselines.py --groups=1 --manual_dir=/path/to/uci_files
"""
import functools
import json
import os
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmoe_jax import data as data_lib
from mmoe_jax import metrics
from mmoe_jax.config import load_config, validate, vocab_size

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                      'census.py')
GROUPS = flags.DEFINE_list('groups', ['1', '2'], 'Task groups of configs/census.py.')
MANUAL_DIR = flags.DEFINE_string('manual_dir', None, "UCI files (default: the config's).")
CACHE_DIR = flags.DEFINE_string('cache_dir', None, "Prepared data (default: the config's).")
L2 = flags.DEFINE_list('l2', ['0', '1e-6', '1e-5', '1e-4', '1e-3', '1e-2'],
                       'L2 strengths tried (on the mean log loss + l2/2 * |w|^2).')
STEPS = flags.DEFINE_integer('steps', 200, 'L-BFGS iterations per fit.')


def one_hot_index(columns, feature_configs):
  """Column of the one-hot design matrix hot in each (row, feature): int32 [N, F], and the
  matrix width. A missing id (-1) gets a column of its own per feature."""
  width, index = 0, []
  for fc in feature_configs:
    ids = np.asarray(columns.features[fc.feature_name])
    index.append(np.where(ids >= 0, ids + 1, 0) + width)
    width += vocab_size(fc) + 1
  return np.stack(index, axis=1).astype(np.int32), width


@functools.partial(jax.jit, static_argnames=('width', 'steps'))
def fit(index, labels, l2, *, width, steps):
  """L2-regularized logistic regression on one-hot rows: {'w': [width], 'b': []}.

  One compile serves every L2 strength and task (both are traced arguments).
  """
  labels = labels.astype(jnp.float32)

  def loss(params):
    logits = params['w'][index].sum(axis=1) + params['b']
    return (optax.sigmoid_binary_cross_entropy(logits, labels).mean()
            + 0.5 * l2 * jnp.sum(params['w'] ** 2))

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(params, updates), state), None

  params = dict(w=jnp.zeros(width), b=jnp.zeros(()))
  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), length=steps)
  return params


def predict(params, index):
  return np.asarray(params['w'][jnp.asarray(index)].sum(axis=1) + params['b'])


def baselines(config, group, l2_grid, steps, log=print):
  """Fits every task of `config` (a validated configs/census.py config); one result per task."""
  splits = {}
  for split in ('train', 'validation', 'test'):
    columns = data_lib.load(split, config, log=log)
    index, width = one_hot_index(columns, config.feature_configs)
    splits[split] = (index, columns.labels)
  results = []
  for task in config.data_config.label_fields:
    start = time.time()
    best = None
    for l2 in l2_grid:
      params = fit(splits['train'][0], np.asarray(splits['train'][1][task]), l2, width=width,
                   steps=steps)
      val = metrics.auc(splits['validation'][1][task], predict(params, splits['validation'][0]))
      if best is None or val > best[0]:
        best = (val, l2, params)
    val, l2, params = best
    test = metrics.auc(splits['test'][1][task], predict(params, splits['test'][0]))
    results.append(dict(model='logistic_regression', group=group, task=task, l2=l2,
                        validation_auc=val, test_auc=test, one_hot_width=width,
                        train_rows=len(splits['train'][0]), seconds=time.time() - start))
  return results


def main(argv):
  del argv
  for group in GROUPS.value:
    arg = f'group={group}' + (f',manual_dir={MANUAL_DIR.value}' if MANUAL_DIR.value else '')
    config = load_config(f'{CONFIG}:{arg}')
    if CACHE_DIR.value:
      config.data_config.cache_dir = CACHE_DIR.value
    config = validate(config)
    for row in baselines(config, int(group), [float(x) for x in L2.value], STEPS.value,
                         log=lambda line: print(line, file=sys.stderr)):
      print(json.dumps(row), flush=True)


if __name__ == '__main__':
  app.run(main)
