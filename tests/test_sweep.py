"""Vmapped sweeps: replica r equals its run alone; grouping, resume, summaries, the study data."""

import json
import logging
import os
import re
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import mmoe
from conftest import run_under_eight_devices
import task_correlation
from mmoe_jax.config import ConfigError, validate
from mmoe_jax.data import task_correlation as tc_data
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import sweep, train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LR = sweep.LEARNING_RATE_FIELDS[0]  # constant_learning_rate.learning_rate


def restore(directory):
  """The newest checkpoint under `directory`/checkpoints as numpy arrays."""
  with ocp.CheckpointManager(os.path.join(directory, 'checkpoints')) as manager:
    return jax.tree.map(np.asarray, manager.restore(manager.latest_step()))


def assert_trees_close(a, b, rtol=2e-5, atol=2e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def mmoe_small_tables(arg=None):
  """configs/mmoe.py with tables of at most 1,000 rows: three vmapped replicas then update
  and checkpoint 3 x 0.3M parameters rather than 3 x 11M (what is tested is the vmapped
  step over embeddings, which the table height does not change)."""
  config = mmoe.get_config(arg)
  for feature in config.feature_configs:
    feature.hash_bucket_size = min(feature.hash_bucket_size, 1000)
  return config


@pytest.mark.parametrize('config_module,arg,data_seeds', [
    (task_correlation, 'tiny', True),  # dense inputs, per-replica data and learning rates
    (types.SimpleNamespace(get_config=mmoe_small_tables), 'tiny', False),  # embeddings, one
    # shared dataset
], ids=['task_correlation', 'mmoe'])
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
    if key not in ('step', 'checkpoint', 'checkpoint_step'):  # train.py's, not a metric
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


class Killed(Exception):
  pass


def test_interrupted_sweep_resumes_to_the_same_result(tmp_path, monkeypatch, caplog):
  runs = [sweep.Run('tiny', seed=s, **{'synthetic.seed': s}) for s in range(2)]
  full = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'full'))
  save = checkpoint_lib.Checkpointer.save

  def save_then_die(self, step, state):  # killed right after the step-10 checkpoint
    save(self, step, state)
    if step == 10:
      self.wait()
      raise Killed

  monkeypatch.setattr(checkpoint_lib.Checkpointer, 'save', save_then_die)
  with pytest.raises(Killed):
    sweep.run_sweep(task_correlation, runs, str(tmp_path / 'resumed'))
  monkeypatch.undo()
  with caplog.at_level(logging.INFO, logger='mmoe_jax'):
    resumed = sweep.run_sweep(task_correlation, runs, str(tmp_path / 'resumed'))
  assert any(re.search(r'resumed.* step 10\b', m) for m in caplog.messages), caplog.messages
  assert resumed == full


def test_rerun_with_a_changed_config_trains_anew(tmp_path, caplog):
  runs = [sweep.Run('tiny', seed=s) for s in range(2)]
  workdir = str(tmp_path / 'sweep')
  first = sweep.run_sweep(task_correlation, runs, workdir)
  (name, members), = sweep.group_runs(task_correlation, runs)
  with open(os.path.join(workdir, name, 'config.json')) as f:
    assert json.load(f) == sweep.group_record(members)  # what the key hashes, beside it
  changed = {'train_config.num_steps': 10}
  with caplog.at_level(logging.INFO, logger='mmoe_jax'):
    second = sweep.run_sweep(task_correlation, runs, workdir, changed)
  assert not any('finished before' in m for m in caplog.messages)
  (other, _), = sweep.group_runs(task_correlation, runs, changed)
  assert other != name and {name, other} <= set(os.listdir(workdir))
  loss = lambda table: table[0]['metrics']['train_total_loss']['mean']
  assert loss(second) != loss(first)
  # The unchanged command finds its group again; results follow the last command.
  assert sweep.run_sweep(task_correlation, runs, workdir) == first
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]
  assert {row['group'] for row in rows} == {name}


def test_group_keys_follow_every_field_but_paths():
  runs = [sweep.Run('tiny', seed=s) for s in range(2)]
  key = lambda overrides, runs=runs: sweep.group_runs(task_correlation, runs, overrides)[0][0]
  assert key({'model_dir': '/elsewhere', 'data_config.cache_dir': '/c'}) == key({})
  assert key({'model_config.mmoe.num_expert': 4}) != key({})
  assert key({}, runs[:1]) != key({})  # the replicas are part of the group
  assert key({}, [sweep.Run('tiny', seed=s) for s in (0, 2)]) != key({})


def test_a_group_directory_of_another_config_is_not_reused(tmp_path):
  (name, members), = sweep.group_runs(task_correlation, [sweep.Run('tiny', seed=0)])
  sweep.claim_group_dir(str(tmp_path / name), members)
  sweep.claim_group_dir(str(tmp_path / name), members)  # the same config: reused
  (_, others), = sweep.group_runs(task_correlation, [sweep.Run('tiny', seed=1)])
  with pytest.raises(ValueError, match=f'{name} holds a group of another config'):
    sweep.claim_group_dir(str(tmp_path / name), others)


def test_sweep_writes_only_under_its_workdir(tmp_path):
  # configs/mmoe.py writes its synthetic data and cache files under model_dir.
  elsewhere = tmp_path / 'model_dir'
  common = {'model_dir': str(elsewhere), 'train_config.num_steps': 2}
  sweep.run_sweep(mmoe, [sweep.Run('tiny', seed=0)], str(tmp_path / 'sweep'), common)
  assert not elsewhere.exists()
  written = set(os.listdir(tmp_path / 'sweep'))
  assert {'data', 'cache', 'results.jsonl', 'summary.json'} < written


def test_summary_reports_diverged_runs_apart():
  nan = float('nan')
  rows = [dict(run='a', learning_rate=0.1, replica=i, seed=i, auc=auc, loss=loss, **extra)
          for i, (auc, loss, extra) in enumerate([
              (0.7, 1.0, dict(nonfinite_step=-1)), (0.8, 2.0, {}), (0.9, 3.0, {}),
              (0.5, 1e3, dict(nonfinite_step=7)),  # stopped at a non-finite step
              (nan, 0.5, {}),  # NaN scores: NaN AUC
              (0.6, 0.1, dict(gate=[0.5, nan]))])]
  rows.append(dict(run='b', learning_rate=0.1, replica=0, seed=0, auc=nan, loss=nan))
  a, b = table = sweep.summarize(rows)
  assert (a['run'], a['n'], a['nonfinite'], a['nonfinite_seeds']) == ('a', 6, 3, [3, 4, 5])
  # Over the runs that trained only (seeds 0, 1, 2).
  assert a['metrics']['loss']['mean'] == 2.0 and a['metrics']['loss']['max'] == 3.0
  np.testing.assert_allclose(a['metrics']['auc']['mean'], 0.8)
  np.testing.assert_allclose(a['metrics']['auc']['std'], np.std([0.7, 0.8, 0.9]))
  assert (b['n'], b['nonfinite'], b['nonfinite_seeds'], b['metrics']) == (1, 1, [0], {})
  text = sweep.format_table(table)
  assert '| a | 0.1 | 6 | 3 (seeds 3, 4, 5) | 0.8000 ± 0.0816' in text
  assert '| b | 0.1 | 1 | 1 (seeds 0) |  |  |' in text


def test_summary_statistics():
  rows = [dict(run='a', learning_rate=0.1, replica=i, seed=i, loss=float(v))
          for i, v in enumerate([1.0, 2.0, 3.0, 4.0])]
  rows.append(dict(run='b', learning_rate=0.1, replica=0, seed=0, loss=7.0))
  table = sweep.summarize(rows)
  assert [(s['run'], s['n'], s['nonfinite']) for s in table] == [('a', 4, 0), ('b', 1, 0)]
  stats = table[0]['metrics']['loss']
  assert stats['mean'] == 2.5 and stats['p50'] == 2.5 and stats['min'] == 1.0
  np.testing.assert_allclose(stats['std'], np.std([1, 2, 3, 4]))
  np.testing.assert_allclose(stats['p10'], 1.3)  # numpy's default (linear) quantile
  assert '| a | 0.1 | 4 | 0 | 2.5000 ± 1.1180 (1.3000 / 2.5000 / 3.7000) |' in (
      sweep.format_table(table))


def test_on_eight_fake_devices():
  """tests/sweep_eight_devices.py under 8 fake CPU devices: the replicas' data is placed
  once, with an explicit sharding."""
  run_under_eight_devices('sweep_eight_devices.py', passed=2)


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
