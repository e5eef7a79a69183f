"""configs/mtl_zoo.py: the model-zoo study declares every model of each part, each model's
seeds train as one vmapped group whose replica equals its run alone, and the report's
tables read the summary as their docstring says."""

import json
import types

import numpy as np
import pytest

import mtl_zoo
from mmoe_jax.training import sweep, train_lib

# Sizes of the replica test: tables of at most 100 rows, 4 steps, a few hundred rows.
SMALL = {'train_config.num_steps': 4, 'train_config.save_checkpoints_steps': 4,
         'train_config.log_step_count_steps': 2, 'synthetic.train_rows': 600,
         'synthetic.eval_rows': 300}


def small_tables(arg=None):
  c = mtl_zoo.get_config(arg)
  for feature in c.feature_configs:
    if feature.hash_bucket_size:
      feature.hash_bucket_size = min(feature.hash_bucket_size, 100)
  return c


# ESMM and PLE (taobao), MMoE (both schemas), DBMTL and SimpleMultiTask (their own configs):
# tests/test_mtl_models.py and tests/test_sweep.py. These are the zoo's other networks, AITM
# (a backbone) among them.
@pytest.mark.parametrize('arg, data_seeds', [
    ('taobao,model=single_task,task=cvr,tiny', False),
    ('taobao,model=shared_bottom,tiny', False),
    ('taobao,model=omoe,tiny', False),
    ('taobao,model=aitm,tiny', False),  # the backbone's AITMTower, stop_gradient inside
    ('correlation,model=ple,tiny', True),  # PLE on dense inputs, L2_LOSS, per-replica data
])
def test_zoo_replica_equals_its_run_alone(arg, data_seeds, tmp_path):
  module = types.SimpleNamespace(get_config=small_tables)
  runs = [sweep.Run(arg, seed=s, **SMALL, **({'synthetic.seed': s} if data_seeds else {}))
          for s in range(2)]
  sweep.run_sweep(module, runs, str(tmp_path / 'sweep'), {'model_dir': str(tmp_path / 'x')})
  rows = [json.loads(line) for line in open(tmp_path / 'sweep' / 'results.jsonl')]
  assert len({row['group'] for row in rows}) == 1  # the seeds trained as one vmapped group
  alone = train_lib.train_and_evaluate(runs[1].config(module,
                                                      {'model_dir': str(tmp_path / 'alone')}))
  assert rows[1]['step'] == alone['step'] == 4
  assert len(alone) > 4  # step, checkpoint, checkpoint_step and a metric per task
  for key, value in alone.items():
    if key not in ('checkpoint', 'checkpoint_step'):  # train.py's, not a metric
      np.testing.assert_allclose(rows[1][key], value, rtol=1e-4, err_msg=key)


def declared(arg):
  runs = []
  mtl_zoo.sweep(lambda a='', **overrides: runs.append((a, overrides)), arg)
  return runs


def test_sweep_declares_every_model_of_each_part_with_five_seeds():
  runs = declared(None)
  by_run = {}
  for arg, overrides in runs:
    by_run.setdefault(arg, []).append(overrides['seed'])
  assert all(seeds == [0, 1, 2, 3, 4] for seeds in by_run.values())
  models = {}
  for arg in by_run:
    items = dict(i.partition('=')[::2] for i in arg.split(','))
    part = next(p for p in ('taobao', 'census', 'correlation') if p in items)
    models.setdefault(part, set()).add(items['model'])
  assert models == {
      'taobao': {'single_task', 'simple_multi_task', 'shared_bottom', 'omoe', 'mmoe', 'ple',
                 'dbmtl', 'esmm', 'aitm'},
      'census': {'single_task', 'simple_multi_task', 'shared_bottom', 'omoe', 'mmoe', 'ple',
                 'dbmtl'},  # no nested tasks: no ESMM, no AITM
      'correlation': {'shared_bottom', 'omoe', 'mmoe', 'ple'}}
  # Single-Task: each taobao task; census' three tasks, never_married once for both groups.
  assert sum('single_task' in a for a in by_run) == 2 + 3
  # 9 + 1 taobao runs, 6 x 2 + 3 census runs, 4 models x 4 correlations.
  assert len(by_run) == 10 + 15 + 16
  # The correlation study's replicas draw their own data, as configs/task_correlation.py's.
  assert all(o['synthetic.seed'] == o['seed'] for a, o in runs if 'correlation,' in a)
  assert {a for a, _ in declared('census')} == {a for a in by_run if a.startswith('census,')}
  assert all(a.endswith(',tiny') for a, _ in declared('tiny,taobao'))
  # :long trains taobao and census longer, the correlation study as it is.
  assert {a for a, _ in declared('long') if ',long' in a} == {
      a + ',long' for a in by_run if not a.startswith('correlation,')}


def test_each_run_is_one_vmapped_group_and_configs_validate():
  runs = [sweep.Run(arg, **o) for arg, o in declared('tiny,taobao')]
  groups = sweep.group_runs(types.SimpleNamespace(get_config=mtl_zoo.get_config), runs)
  assert len(groups) == len(runs) // 2 and all(len(m) == 2 for _, m in groups)


def test_get_config_takes_one_part_and_names_the_model():
  assert mtl_zoo.get_config('census,model=ple,group=2').model_config.model_class == 'PLE'
  assert mtl_zoo.get_config('census,model=ple,group=2').data_config.label_fields == (
      'college', 'never_married')
  assert mtl_zoo.get_config(None).model_config.model_class == 'MMoE'  # taobao by default
  with pytest.raises(ValueError, match='one part at a time'):
    mtl_zoo.get_config('taobao,census')
  with pytest.raises(ValueError, match=r"model: 'esmm' is not one of .*\(on census\)"):
    mtl_zoo.get_config('census,model=esmm')
  with pytest.raises(ValueError, match='long: the correlation part has no longer'):
    mtl_zoo.get_config('correlation,long')
  steps = lambda arg: mtl_zoo.get_config(arg).train_config.num_steps
  assert (steps('taobao'), steps('taobao,long')) == (500, 1000)
  assert (steps('census'), steps('census,long'), steps('correlation')) == (1000, 3000, 3000)


def entry(run, **metrics):
  return dict(run=run, n=5, metrics={k: dict(mean=m, std=s) for k, (m, s) in metrics.items()})


def test_report_tables():
  summary = [
      entry('taobao,model=single_task,task=ctr', auc_ctr=(0.70, 0.01),
            oracle_auc_ctr=(0.75, 0.0)),
      entry('taobao,model=single_task,task=cvr', auc_cvr=(0.60, 0.02),
            oracle_auc_cvr=(0.66, 0.0)),
      # ESMM's buy over every impression is its pCTCVR.
      entry('taobao,model=esmm', auc_ctr=(0.71, 0.001), oracle_auc_ctr=(0.75, 0.0),
            auc_ctcvr=(0.62, 0.003), oracle_auc_ctcvr=(0.66, 0.0), auc_cvr_masked=(0.5, 0.1)),
      entry('census,model=single_task,group=1,task=never_married',
            auc_never_married=(0.99, 0.001)),
      entry('census,model=mmoe,group=2', auc_college=(0.88, 0.002),
            auc_never_married=(0.98, 0.003)),
      entry('correlation,model=ple,p=0.8', mean_squared_error_task1=(0.07, 0.01),
            mean_squared_error_task2=(0.08, 0.02)),
  ]
  text = mtl_zoo.report(summary)
  assert '| Single-Task | 5 | 0.7000 ± 0.0100 | 0.0500 ± 0.0100 | 0.6000 ± 0.0200 | ' \
         '0.0600 ± 0.0200 |' in text
  assert '| ESMM | 5 | 0.7100 ± 0.0010 | 0.0400 ± 0.0010 | 0.6200 ± 0.0030 | ' \
         '0.0400 ± 0.0030 |' in text
  # Single-Task's never_married (trained in group 1) fills both groups' columns.
  assert '| Single-Task |  | 0.9900 ± 0.0010 |  | 0.9900 ± 0.0010 |' in text
  assert '| MMoE |  |  | 0.8800 ± 0.0020 | 0.9800 ± 0.0030 |' in text
  assert '| PLE | 0.0700 ± 0.0100 |' in text and '| PLE | 0.0800 ± 0.0200 |' in text
