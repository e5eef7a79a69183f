"""configs/signals_study.py: its sweep, its table, and sweep replicas under Uncertainty and
Pareto weights with gauc equal to their runs alone."""

import json

import jax
import numpy as np
import pytest

import signals_study
from mmoe_jax.training import sweep, train_lib
from test_sweep import assert_trees_close, restore

STEPS = 4
TRAINED = ('uncertainty', 'pareto')


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  """A tiny sweep of the Uncertainty and Pareto variants, 2 seeds each, STEPS steps:
  (workdir, runs, summary, results rows)."""
  workdir = tmp_path_factory.mktemp('signals_study')
  runs = [sweep.Run(f'variant={v},tiny', seed=s, **{'train_config.num_steps': STEPS})
          for v in TRAINED for s in range(2)]
  summary = sweep.run_sweep(signals_study, runs, str(workdir / 'sweep'))
  rows = [json.loads(line) for line in open(workdir / 'sweep' / 'results.jsonl')]
  return workdir, runs, summary, rows


def test_the_sweep_is_five_groups_of_five_seeds():
  _, runs = sweep.load_runs(signals_study.__file__)
  groups = sweep.group_runs(signals_study, runs)
  assert [len(members) for _, members in groups] == [signals_study.SEEDS] * 5
  variants = [members[0][0].arg for _, members in groups]
  assert variants == [f'variant={v}' for v in signals_study.VARIANTS]
  for _, members in groups:
    assert [c.seed for _, c in members] == list(range(signals_study.SEEDS))


@pytest.mark.parametrize('variant', TRAINED)
def test_a_replica_equals_its_run_alone_with_gauc(study, tmp_path, variant):
  workdir, runs, _, rows = study
  r = TRAINED.index(variant) * 2 + 1  # seed 1 of the variant
  group = rows[r]['group']
  vmapped = restore(str(workdir / 'sweep' / group))
  config = runs[r].config(signals_study, {'model_dir': str(tmp_path / 'alone')})
  alone = train_lib.train_and_evaluate(config)
  state = restore(config.model_dir)
  replica = jax.tree.map(lambda a: a[rows[r]['replica']], vmapped['params'])
  assert_trees_close(replica, state['params'])
  if variant == 'uncertainty':  # the learnt weights are params, and they moved
    assert set(state['params']['loss_weight']) == {'cross_entropy_loss_ctr',
                                                   'cross_entropy_loss_cvr'}
    assert all(abs(float(s)) > 0 for s in state['params']['loss_weight'].values())
  assert {'gauc_ctr', 'gauc_cvr'} <= set(alone)
  for key in ('gauc_ctr', 'gauc_cvr', 'auc_ctr', 'auc_cvr', 'oracle_auc_cvr'):
    np.testing.assert_allclose(rows[r][key], alone[key], rtol=1e-4, err_msg=key)


def test_report_has_every_variant_and_task(study):
  summary = study[2]
  lines = signals_study.report(summary).splitlines()
  assert len(lines) == 2 + 2 * len(TRAINED)  # header, rule, ctr and cvr per variant
  for line in lines[2:]:
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[1] == '2' and all(cells), line  # 2 seeds, every cell filled
  # The gap is the oracle's AUC less the model's, its std the AUC's (one oracle AUC).
  m = summary[0]['metrics']
  gap = m['oracle_auc_cvr']['mean'] - m['auc_cvr']['mean']
  assert f"{gap:.4f} ± {m['auc_cvr']['std']:.4f}" in lines[3]


def test_report_reads_esmm_targets():
  stats = lambda v: dict(mean=v, std=0.01)
  keys = ('auc_ctr', 'gauc_ctr', 'oracle_auc_ctr', 'auc_ctcvr', 'gauc_ctcvr', 'oracle_auc_ctcvr',
          'auc_cvr_masked', 'gauc_cvr_masked', 'oracle_auc_cvr_masked')
  entry = dict(run='variant=esmm', n=5, nonfinite=1,
               metrics={k: stats(0.5 + i / 100) for i, k in enumerate(keys)})
  lines = signals_study.report([entry]).splitlines()[2:]
  assert [line.split('|')[3].strip() for line in lines] == ['ctr', 'ctcvr = ctr x cvr', 'cvr']
  assert all(line.split('|')[2].strip() == '4' for line in lines)  # the finite runs
  # ctcvr: AUC 0.53, GAUC 0.54, oracle 0.55, gap 0.02
  assert '| 0.5300 ± 0.0100 | 0.5400 ± 0.0100 | 0.5500 | 0.0200 ± 0.0100 |' in lines[1]
