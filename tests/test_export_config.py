"""export_config during training: EasyRec's early stop and best / latest exporters, on
scripted evaluation sequences (expected steps worked out by hand from the rules in
docs/serving.md). A run that stops early: tests/test_serving.py."""

import json
import os

import ml_collections
import pytest

from mmoe_jax.config import ConfigError, complete, schema
from mmoe_jax.training import exporter


def export_config(**fields):
  return complete(fields, schema.EXPORT_CONFIG)


def first_stop(values, every=1000, **fields):
  """The step at which early stop first says stop when evaluations of `values` (auc_ctr)
  come every `every` steps, or None."""
  config = export_config(enable_early_stop=True, best_exporter_metric='auc_ctr', **fields)
  history = {}
  for i, value in enumerate(values, 1):
    history[i * every] = {'auc_ctr': value}
    if exporter.should_stop(history, config):
      return i * every
  return None


def test_early_stop_when_max_check_steps_pass_without_strict_improvement():
  # best 0.75 at 2000 (4000's equal value is no improvement): 5000 - 2000 >= 3000
  assert first_stop([0.70, 0.75, 0.74, 0.75, 0.73, 0.72], max_check_steps=3000) == 5000
  # an improvement at 4000 moves the best: 4000 + 3000 = 7000
  assert first_stop([0.70, 0.75, 0.74, 0.76, 0.73, 0.72, 0.71, 0.70],
                    max_check_steps=3000) == 7000
  assert first_stop([0.70, 0.71, 0.72, 0.73], max_check_steps=1000) is None


def test_early_stop_metric_smaller_is_better():
  losses = [0.50, 0.40, 0.45, 0.40, 0.41]  # best 0.40 at 2000
  assert first_stop(losses, metric_bigger=False, max_check_steps=3000) == 5000
  # bigger is better: 0.50 at 1000 stays the best
  assert first_stop(losses, metric_bigger=True, max_check_steps=3000) == 4000
  assert first_stop(losses, metric_bigger=False, max_check_steps=4000) is None


def test_early_stop_off_unless_enabled():
  history = {1000: {'auc_ctr': 0.7}, 9000: {'auc_ctr': 0.6}}
  config = export_config(best_exporter_metric='auc_ctr', max_check_steps=1)
  assert not exporter.should_stop(history, config)


def stop_after_two(eval_results, params):
  """An early_stop_func: stop once there are `params` evaluations (checks what it gets)."""
  assert all(isinstance(step, int) for step in eval_results)
  return len(eval_results) >= int(params)


def test_early_stop_func_gets_the_evaluations_and_params():
  assert first_stop([0.7, 0.8, 0.9], early_stop_func=f'{__name__}.stop_after_two',
                    early_stop_params='2') == 2000
  with pytest.raises(ConfigError, match="export_config.early_stop_func: cannot load 'no.such'"):
    first_stop([0.7], early_stop_func='no.such')


def test_best_exporter_metric_must_be_a_metric():
  with pytest.raises(ConfigError, match=r"export_config.best_exporter_metric: 'auc' is not a "
                     r'metric of this model \(its metrics: auc_ctr\)'):
    exporter.best_step({1: {'auc_ctr': 0.5, 'oracle_auc_ctr': 0.7}}, export_config())


class FakeCheckpoints:
  """Checkpoint directories of the steps given, as Checkpointer lays them out."""

  def __init__(self, directory, steps):
    self.directory = str(directory)
    for step in steps:
      os.makedirs(os.path.join(self.directory, str(step)))
      open(os.path.join(self.directory, str(step), 'state'), 'w').write(str(step))

  def wait(self):
    pass


@pytest.mark.parametrize('kind, keep, exported, kept', [
    ('best', 1, [1, 2, 4], [4]),  # 3 and 5 are no improvement on 2 and 4
    ('best', 2, [1, 2, 4], [2, 4]),
    ('latest', 2, [1, 2, 3, 4, 5], [4, 5]),
    ('final', 1, [], []),
])
def test_exporters_export_and_keep(tmp_path, monkeypatch, kind, keep, exported, kept):
  calls = []

  def fake_export(trainer, state, directory, platforms=('cpu',)):
    del trainer, state, platforms
    calls.append(int(os.path.basename(directory)))
    os.makedirs(directory)

  monkeypatch.setattr(exporter, 'export', fake_export)
  config = ml_collections.ConfigDict(dict(model_dir=str(tmp_path), export_config=export_config(
      exporter_type=kind, best_exporter_metric='auc_ctr', exports_to_keep=keep)))
  exporters = exporter.Exporters(config, FakeCheckpoints(tmp_path / 'checkpoints', range(1, 6)),
                                 lead=True)
  history = {}
  for step, value in zip(range(1, 6), [0.6, 0.7, 0.65, 0.75, 0.75]):
    history[step] = {'auc_ctr': value}
    exporters.after_eval(None, None, step, dict(history))
  assert calls == exported
  if kind in ('best', 'latest'):
    assert sorted(int(d) for d in os.listdir(tmp_path / 'export' / kind)) == kept
  if kind == 'best':  # the best checkpoint alone, kept apart from keep_checkpoint_max
    assert os.listdir(tmp_path / 'best_ckpt') == ['4']
    assert open(tmp_path / 'best_ckpt' / '4' / 'state').read() == '4'
