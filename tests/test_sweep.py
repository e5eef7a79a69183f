"""Vmapped sweeps: replica r equals its run alone; grouping, resume, summaries, the study data."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import mmoe
import task_correlation
from mmoe_jax.config import ConfigError, validate
from mmoe_jax.data import task_correlation as tc_data
from mmoe_jax.training import sweep, train_lib

LR = sweep.LEARNING_RATE_FIELDS[0]  # constant_learning_rate.learning_rate


def restore(directory):
  """The newest checkpoint under `directory`/checkpoints as numpy arrays."""
  with ocp.CheckpointManager(os.path.join(directory, 'checkpoints')) as manager:
    return jax.tree.map(np.asarray, manager.restore(manager.latest_step()))


def assert_trees_close(a, b, rtol=2e-5, atol=2e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize('config_module,arg,data_seeds', [
    (task_correlation, 'tiny', True),  # dense inputs, per-replica data and learning rates
    (mmoe, 'tiny', False),  # embeddings, one shared dataset
])
def test_each_replica_equals_its_run_alone(tmp_path, config_module, arg, data_seeds):
  runs = [sweep.Run(arg, seed=s, **({'synthetic.seed': s} if data_seeds else {}))
          for s in range(3)]
  if data_seeds:
    runs[1].overrides[LR] = 0.01
  common = {'model_dir': str(tmp_path / 'unused')}
  groups = sweep.group_runs(config_module, runs, common)
  assert len(groups) == 1 and len(groups[0][1]) == 3  # seeds and rates share one vmapped step
  rows = sweep.run_sweep(config_module, runs, str(tmp_path / 'sweep'), common) and [
      json.loads(line) for line in open(tmp_path / 'sweep' / 'results.jsonl')]
  vmapped = restore(str(tmp_path / 'sweep' / groups[0][0]))
  # Replica 1 has its own seed, data and (task_correlation) learning rate.
  config = runs[1].config(config_module, {'model_dir': str(tmp_path / 'alone')})
  alone = train_lib.train_and_evaluate(config)
  state = restore(config.model_dir)
  assert_trees_close(jax.tree.map(lambda a: a[1], vmapped['params']), state['params'])
  assert rows[1]['step'] == alone['step'] == config.train_config.num_steps
  for key, value in alone.items():
    if key != 'step':
      np.testing.assert_allclose(rows[1][key], value, rtol=1e-4, err_msg=key)
  if data_seeds:
    assert rows[1]['learning_rate'] == 0.01 and rows[0]['learning_rate'] == 0.001
    assert [row['data_seed'] for row in rows] == [0, 1, 2]


def test_groups_split_on_shape_and_max_replicas():
  runs = [sweep.Run(f'model={m},tiny', seed=s) for m in ('mmoe', 'omoe') for s in range(3)]
  runs.append(sweep.Run('model=mmoe,tiny', seed=9, **{'data_config.batch_size': 16}))
  groups = sweep.group_runs(task_correlation, runs)
  assert [len(members) for _, members in groups] == [3, 3, 1]
  groups = sweep.group_runs(task_correlation, runs, max_replicas=2)
  assert [len(members) for _, members in groups] == [2, 1, 2, 1, 1]
  assert len({name for name, _ in groups}) == 5


def test_interrupted_sweep_resumes_to_the_same_result(tmp_path):
  runs = [sweep.Run('tiny', seed=s, **{'synthetic.seed': s}) for s in range(2)]
  full = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'full'))
  # "Interrupted" after the step-10 checkpoint: the same workdir, then the full length.
  half = {'train_config.num_steps': 10}
  sweep.run_sweep(task_correlation, runs, str(tmp_path / 'resumed'), half)
  for name in os.listdir(tmp_path / 'resumed'):
    if os.path.isdir(tmp_path / 'resumed' / name):
      os.remove(tmp_path / 'resumed' / name / 'results.jsonl')  # not finished
  resumed = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'resumed'))
  assert resumed == full


def test_summary_statistics_and_nonfinite_replicas():
  rows = [dict(run='a', learning_rate=0.1, replica=i, seed=i, loss=float(v))
          for i, v in enumerate([1.0, 2.0, 3.0, 4.0, float('nan')])]
  rows.append(dict(run='b', learning_rate=0.1, replica=0, seed=0, loss=7.0))
  table = sweep.summarize(rows)
  assert [(s['run'], s['n']) for s in table] == [('a', 5), ('b', 1)]
  stats = table[0]['metrics']['loss']
  assert stats['mean'] == 2.5 and stats['p50'] == 2.5 and stats['nonfinite'] == 1
  np.testing.assert_allclose(stats['std'], np.std([1, 2, 3, 4]))
  assert '2.5000 ± 1.1180' in sweep.format_table(table)


def test_sweep_function_declares_the_study():
  module, runs = sweep.load_runs(task_correlation.__file__)
  settings = {r.arg for r in runs}
  assert len(runs) == 4 * 3 * 100 and len(settings) == 12
  assert {r.overrides['seed'] for r in runs} == set(range(100))
  with pytest.raises(ValueError, match='has no sweep'):
    sweep.load_runs(mmoe.__file__)


def test_task_correlation_data_has_the_asked_correlation():
  def pearson(p, **kw):
    x, labels = tc_data.generate(20000, correlation=p, seed=3, input_dim=20, **kw)
    assert x.shape == (20000, 20) and set(labels) == set(tc_data.LABELS)
    return np.corrcoef(labels['y1'], labels['y2'])[0, 1]

  # Linear tasks: the labels' Pearson correlation is p (the paper's Fig. 2, linear case).
  for p in (0.5, 0.9):
    np.testing.assert_allclose(pearson(p, num_sines=0), p, atol=0.03)
  # With the sines it is lower but still grows with p, up to identical tasks at p = 1.
  with_sines = [pearson(p) for p in (0.5, 0.8, 0.9, 1.0)]
  assert with_sines == sorted(with_sines) and with_sines[-1] > 0.99
  x, _ = tc_data.generate(100, correlation=0.5, seed=3)
  np.testing.assert_array_equal(tc_data.generate(100, correlation=0.5, seed=3)[0], x)
  assert not np.array_equal(tc_data.generate(100, correlation=0.5, seed=4)[0], x)


def test_task_correlation_config_checks_its_schema():
  config = task_correlation.get_config('tiny')
  config.data_config.label_fields = ('y2', 'y1')
  with pytest.raises(ConfigError, match=r"data_config.label_fields: the synthetic.task_correl"):
    validate(config)
  config = task_correlation.get_config('tiny')
  config.feature_configs[0].raw_input_dim = 7
  with pytest.raises(ConfigError, match=r'feature_configs\[0\].raw_input_dim: 7 != synthetic'):
    validate(config)


def test_seeds_of_an_easyrec_pipeline_config(tmp_path):
  from conftest import EASYREC_CONFIGS
  path = os.path.join(EASYREC_CONFIGS, 'mmoe_taobao.config')
  if not os.path.exists(path):
    pytest.skip(f'{path} not present')
  module, runs = sweep.load_runs(path, seeds=3)
  groups = sweep.group_runs(module, runs)
  assert len(groups) == 1 and [c.seed for _, c in groups[0][1]] == [0, 1, 2]
  assert groups[0][1][0][1].model_config.mmoe.num_expert == 4
