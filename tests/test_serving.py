"""From training to serving: the exported artifact (scripts/export.py) served by
mmoe_jax/serving.py with no model code, predict.py's inputs and outputs, and
fine_tune_checkpoint."""

import csv
import functools
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT
from mmoe_jax import data as data_lib
from mmoe_jax import serving
from mmoe_jax.config import validate
from mmoe_jax.training import checkpoint, evaluation, exporter, train_lib
from mmoe_jax.training.trainer import Trainer

ROWS = 1000
LABELS = ('clk', 'buy')
KEEP = ('user_id', 'pid')


def tiny(name, model_dir):
  """configs/<name>.py:tiny with small tables, checkpoints every 2 steps, 1,000 eval rows."""
  sys.path.insert(0, os.path.join(ROOT, 'configs'))
  module = __import__(name)
  config = module.get_config('tiny')
  config.model_dir = str(model_dir)
  for fc in config.feature_configs:
    fc.hash_bucket_size = min(fc.hash_bucket_size, 1000)
  config.train_config.update(num_steps=2, save_checkpoints_steps=2, log_step_count_steps=2)
  config.synthetic.update(train_rows=512, eval_rows=ROWS)
  return config


def stop_at_second_eval(eval_results, params):
  """An early_stop_func (export_config): stops at the second evaluation."""
  del params
  return len(eval_results) >= 2


@pytest.fixture(scope='module', params=['mmoe', 'mmoe_backbone'])
def trained(request, tmp_path_factory):
  """A tiny model's checkpoint and its export, its eval CSV without labels, and predict.py's
  predictions for that CSV (keeping two id columns) from the exported checkpoint.

  The MMoE trains with exporter_type best and early stop, by a function that stops it at
  its second evaluation (step 4 of 8). The backbone model's initial state is saved as a
  checkpoint and exported by scripts/export.py's function for cpu and cuda (the
  equality needs no training, and this skips compiling a train step).
  """
  base = tmp_path_factory.mktemp(request.param)
  config = tiny(request.param, base / 'model')
  if request.param == 'mmoe':
    config.train_config.num_steps = 8
    config.export_config.update(exporter_type='best', best_exporter_metric='auc_cvr',
                                enable_early_stop=True,
                                early_stop_func=f'{__name__}.stop_at_second_eval')
    result = train_lib.train_and_evaluate(config)
    artifact = os.path.join(config.model_dir, 'export', 'best', str(result['checkpoint_step']))
    source = os.path.join(config.model_dir, 'best_ckpt')
  else:
    valid = validate(config)
    data_lib.input_paths(valid)  # writes the synthetic CSVs
    trainer = Trainer(valid, example=dict(features=exporter.zero_features(valid)))
    checkpoint.Checkpointer(config.model_dir, 1).save(0, trainer.create_state())
    result, artifact, source = None, str(base / 'export'), None
    exporter.export_checkpoint(config, artifact, platforms=('cpu', 'cuda'))
  eval_csv = os.path.join(config.model_dir, 'data', f'synthetic_eval_{ROWS}_0.csv')
  unlabeled = str(base / 'features.csv')
  with open(eval_csv) as f, open(unlabeled, 'w', newline='') as out:
    csv.writer(out).writerows(row[len(LABELS):] for row in csv.reader(f))
  predictions, table = evaluation.predict_checkpoint_table(config, unlabeled, keep=KEEP,
                                                           checkpoint_path=source)
  return dict(config=config, result=result, unlabeled=unlabeled, eval_csv=eval_csv,
              artifact=artifact, predictions=predictions, table=table)


def test_run_stops_early_and_reports_its_best_checkpoint(trained):
  """exporter_type best with early stop: the run stops at its second evaluation, exports
  the best step alone (exports_to_keep 1), keeps its checkpoint in best_ckpt, and its
  final line reports it; a rerun stays stopped and reports the same."""
  config, result = trained['config'], trained['result']
  if result is None:
    pytest.skip('the MMoE run')
  with open(os.path.join(config.model_dir, 'metrics.jsonl')) as f:
    history = {row.pop('step'): row for row in map(json.loads, f)}
  assert sorted(history) == [2, 4] and result['step'] == 4
  best = 4 if history[4]['auc_cvr'] > history[2]['auc_cvr'] else 2  # strict improvement
  assert result['checkpoint'] == 'best' and result['checkpoint_step'] == best
  assert {k: result[k] for k in history[best]} == history[best]
  assert os.listdir(os.path.join(config.model_dir, 'export', 'best')) == [str(best)]
  assert os.listdir(os.path.join(config.model_dir, 'best_ckpt')) == [str(best)]
  assert train_lib.train_and_evaluate(config) == result


# Run where mmoe_jax.models, mmoe_jax.config, flax and optax cannot be imported.
NO_MODEL_CODE = r'''
import sys, importlib.abc
class Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('flax', 'optax', 'orbax') or name.startswith(
        ('mmoe_jax.models', 'mmoe_jax.config', 'mmoe_jax.training', 'mmoe_jax.builder')):
      raise ImportError(f'{name} may not be imported here')
sys.meta_path.insert(0, Refuse())
import numpy as np
from mmoe_jax import serving
artifact, csv_path, out = sys.argv[1:]
predictor = serving.load(artifact)
np.savez(out, **predictor.predict_csv(csv_path))
'''


def test_artifact_serves_predict_py_outputs_without_model_code(trained, tmp_path):
  """The artifact (the MMoE's best export in training; the backbone model's by export.py's
  function), loaded where no model code can be imported, predicts 1,000 label-less rows
  as predict.py does from the same checkpoint (to 1e-6)."""
  expected = trained['predictions']
  out = tmp_path / 'served.npz'
  done = subprocess.run(
      [sys.executable, '-c', NO_MODEL_CODE, trained['artifact'], trained['unlabeled'], str(out)],
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  with np.load(out) as served:
    assert sorted(served.files) == sorted(expected)
    for name, value in expected.items():
      assert served[name].shape == value.shape == (ROWS,)
      np.testing.assert_allclose(served[name], value, atol=1e-6, rtol=0, err_msg=name)


def test_manifest_lists_transforms_outputs_and_platforms(trained):
  manifest = json.load(open(os.path.join(trained['artifact'], serving.MANIFEST)))
  if trained['result'] is None:  # the backbone model, exported for cuda too
    assert manifest['step'] == 0 and manifest['platforms'] == ['cpu', 'cuda']
    assert serving.load(trained['artifact']).platforms == ('cpu', 'cuda')
  else:  # the best exporter's, in training
    assert manifest['step'] == trained['result']['checkpoint_step']
    assert manifest['platforms'] == ['cpu']
  inputs = manifest['inputs']
  assert inputs['label_fields'] == list(LABELS) and inputs['separator'] == ','
  assert not inputs['with_header']
  features = {f['feature_name']: f for f in inputs['features']}
  assert features['user_id'] | dict(input_names=['user_id']) == dict(
      feature_name='user_id', feature_type='IdFeature', input_names=['user_id'],
      hash_bucket_size=1000, num_buckets=0, vocab_list=[], boundaries=[], separator='|',
      raw_input_dim=1, hash='fnv1a_64')
  assert features['tag_brand_list']['feature_type'] == 'TagFeature'
  assert features['tag_brand_list']['separator'] == '|'
  assert features['price']['num_buckets'] == 50 and features['price']['hash'] == ''
  fields = {f['input_name']: f for f in inputs['input_fields']}
  assert fields['price'] == dict(input_name='price', input_type='INT32', default_val='')
  # EasyRec's output names, one value per row
  assert [(o['name'], o['shape']) for o in manifest['outputs']] == [
      ('logits_ctr', []), ('logits_cvr', []), ('probs_ctr', []), ('probs_cvr', [])]


def test_predict_takes_raw_columns_as_predict_csv(trained):
  """predict(dict of raw columns) equals predict_csv on the same rows; numbers may be given
  as numbers, and a missing value as None (an empty cell)."""
  predictor = serving.load(trained['artifact'])
  names = [f['input_name'] for f in predictor.manifest['inputs']['input_fields']]
  with open(trained['eval_csv']) as f:
    rows = list(csv.reader(f))[:50]
  rows[3][names.index('cms_segid')] = ''
  columns = {n: [r[i] for r in rows] for i, n in enumerate(names) if n not in LABELS}
  columns['price'] = [int(v) for v in columns['price']]
  columns['cms_segid'][3] = None
  got = predictor.predict(columns)
  path = os.path.join(os.path.dirname(trained['unlabeled']), 'fifty.csv')
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows(rows)
  want = predictor.predict_csv(path)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name])


def test_predict_writes_reserved_and_chosen_columns(trained, tmp_path):
  """predict.py's output: the chosen outputs in order (EasyRec's 'name type' items too),
  then the reserved input columns as read; labels are not needed in the input."""
  predictions, table = trained['predictions'], trained['table']
  out = tmp_path / 'out.csv'
  evaluation.write_predictions(predictions, str(out), table.select(['user_id', 'pid']),
                               ['probs_cvr double', 'logits_ctr'])
  with open(out) as f:
    rows = list(csv.DictReader(f))
  with open(trained['unlabeled']) as f:
    inputs = list(csv.reader(f))
  assert list(rows[0]) == ['probs_cvr', 'logits_ctr', 'user_id', 'pid']
  assert len(rows) == ROWS
  user, pid = 8 - len(LABELS), 2 - len(LABELS)  # their columns in input_fields, less labels
  assert [r['user_id'] for r in rows] == [r[user] for r in inputs]
  assert [r['pid'] for r in rows] == [r[pid] for r in inputs]
  np.testing.assert_allclose([float(r['probs_cvr']) for r in rows], predictions['probs_cvr'],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="output_cols: no output 'probs_x'"):
    evaluation.write_predictions(predictions, str(out), None, ['probs_x'])


def test_predict_script_serves_the_artifact(trained, tmp_path):
  """predict.py --saved_model_dir: no --config; the label-less input, reserved columns."""
  if trained['config'].model_config.model_class != 'MMoE':
    pytest.skip('one model is enough')
  out = tmp_path / 'pred.csv'
  done = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'predict.py'),
       f'--saved_model_dir={trained["artifact"]}', f'--input_path={trained["unlabeled"]}',
       f'--output_path={out}', '--reserved_cols=pid'],
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ['probs_ctr', 'probs_cvr', 'pid']
  assert [r['pid'] for r in rows] == [v.as_py() for v in trained['table']['pid']]
  np.testing.assert_allclose([float(r['probs_ctr']) for r in rows],
                             trained['predictions']['probs_ctr'], atol=1e-6)


def test_csv_errors_name_the_columns(trained, tmp_path):
  inputs = serving.load(trained['artifact']).inputs
  bad = tmp_path / 'bad.csv'
  bad.write_text('1,2,3\n')
  with pytest.raises(ValueError, match=r'bad.csv:1: expected 20 columns \(input_fields\) or '
                                       r'18 \(input_fields without label_fields\), got 3'):
    inputs.read_csv(str(bad))
  with pytest.raises(ValueError, match="no column 'order_id'"):
    inputs.read_csv(trained['unlabeled'], keep=['order_id'])


def test_fine_tune_checkpoint_restores_matching_names_and_shapes(trained, caplog):
  """A fresh state of a model like the trained one, but with one parameter of another
  shape and one the checkpoint lacks, warm-started from the trained run: every parameter
  of the same name and shape is the checkpoint's, the other two keep their initial values
  and are logged; the step stays 0; the optimizer state is the fresh one unless asked."""
  if trained['config'].model_config.model_class != 'MMoE':
    pytest.skip('one model is enough')
  directory, step = checkpoint.locate(trained['config'].model_dir)
  saved = ocp.CheckpointManager(directory).restore(step, args=ocp.args.StandardRestore())
  flat = lambda tree: {checkpoint._dotted(p): np.asarray(v) for p, v in  # pylint: disable=protected-access
                       jax.tree_util.tree_leaves_with_path(tree)}
  old = flat(saved)
  # the fresh state: the checkpoint's tree, every value replaced, one kernel widened
  fresh = jax.tree.map(lambda v: jnp.full(np.shape(v), 7, np.asarray(v).dtype), saved)
  kernel = next(n for n in old if n.startswith('params.') and n.endswith('kernel'))
  *path, last = kernel.split('.')
  parent = functools.reduce(lambda d, k: d[k], path, fresh)
  parent[last] = jnp.zeros((old[kernel].shape[0] + 1,) + old[kernel].shape[1:])
  parent['extra'] = jnp.ones(3)
  new = flat(fresh)
  for optimizer_state in (False, True):
    caplog.clear()
    with caplog.at_level(logging.INFO, 'mmoe_jax'):
      got = flat(checkpoint.warm_start(fresh, trained['config'].model_dir, optimizer_state))
    taken = [n for n in got if n.startswith(('params.', 'batch_stats.')) or (
        optimizer_state and n.startswith('opt_state.'))]
    for name, value in got.items():
      from_checkpoint = name in taken and name in old and old[name].shape == value.shape
      np.testing.assert_array_equal(value, old[name] if from_checkpoint else new[name], name)
    assert got['step'] == 7  # the fresh state's: EasyRec does not restore global_step
    assert f'skipped {kernel}: checkpoint {old[kernel].shape}' in caplog.text
    assert f'not in the checkpoint, initialized: {".".join(path)}.extra' in caplog.text
    assert ('optimizer state not taken' in caplog.text) != optimizer_state
