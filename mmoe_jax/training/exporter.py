"""Exports a checkpoint for serving (mmoe_jax/serving.py loads it), and export_config's
exporters and early stop during training (docs/serving.md).

Exports live in <model_dir>/export/<exporter_type>/<step>/, one artifact each; a `best`
exporter also copies the best checkpoint to <model_dir>/best_ckpt/<step>/, which
keep_checkpoint_max never prunes.
"""

import importlib
import json
import logging
import os
import shutil
import tempfile

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmoe_jax import serving
from mmoe_jax.config import ConfigError, validate
from mmoe_jax.training import checkpoint, run_dir
from mmoe_jax.training.trainer import Trainer

log = logging.getLogger('mmoe_jax')

# The feature config fields the transforms read (data/features.py), per feature.
FEATURE_FIELDS = ('feature_name', 'feature_type', 'input_names', 'hash_bucket_size',
                  'num_buckets', 'vocab_list', 'boundaries', 'separator', 'raw_input_dim')


def input_manifest(config):
  """The manifest's inputs: the CSV layout and, per feature, its transform (serving.Inputs)."""
  data = config.data_config
  features = []
  for fc in config.feature_configs:
    spec = {k: _plain(fc[k]) for k in FEATURE_FIELDS}
    # data/features.py: FNV-1a 64 of the UTF-8 text (an INT field's decimal text), modulo
    spec['hash'] = 'fnv1a_64' if fc.hash_bucket_size else ''
    features.append(spec)
  return dict(
      input_fields=[dict(input_name=f.input_name, input_type=f.input_type,
                         default_val=f.default_val) for f in data.input_fields],
      label_fields=list(data.label_fields), separator=data.separator,
      with_header=data.with_header, features=features)


def zero_features(config, rows=1):
  """Feature arrays of `rows` rows of zeros, of the dtypes and shapes the transforms give
  (data/features.py): enough to build a Trainer without reading data."""
  out = {}
  for fc in config.feature_configs:
    if fc.feature_type == 'TagFeature':
      out[fc.feature_name] = np.zeros((rows, 1), np.int32)
    elif fc.feature_type == 'IdFeature' or fc.boundaries:
      out[fc.feature_name] = np.zeros(rows, np.int32)
    elif fc.raw_input_dim > 1:
      out[fc.feature_name] = np.zeros((rows, fc.raw_input_dim), np.float32)
    else:
      out[fc.feature_name] = np.zeros(rows, np.float32)
  return out


def export(trainer, state, directory, platforms=('cpu',)):
  """Writes the artifact of `state`'s prediction function to `directory` (replaced
  whole, atomically); returns its manifest."""
  config = trainer.config
  params = jax.device_get((state['params'], state['batch_stats']))
  leaves, tree = jax.tree.flatten(params)

  def predict(leaves, features):
    return trainer.predict_fn(*jax.tree.unflatten(tree, leaves), features)

  tags = [f.feature_name for f in config.feature_configs if f.feature_type == 'TagFeature']
  # One scope for every symbol: the batch size, and each tag feature's list length.
  dims = jax.export.symbolic_shape(','.join(['batch'] + [f'len_{i}' for i in range(len(tags))]))
  length = dict(zip(tags, dims[1:]))
  specs = {k: jax.ShapeDtypeStruct((dims[0], length[k]) if k in length else
                                   (dims[0],) + v.shape[1:], v.dtype)
           for k, v in trainer.example['features'].items()}
  exported = jax.export.export(jax.jit(predict), platforms=tuple(platforms))(
      [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves], specs)
  index = jax.tree.unflatten(exported.out_tree, range(len(exported.out_avals)))
  outputs = {k: exported.out_avals[i] for k, i in sorted(index.items())}
  manifest = dict(
      format=serving.FORMAT, step=int(state['step']), model_class=config.model_config.model_class,
      platforms=list(exported.platforms), jax_version=jax.__version__,
      batch_size=config.data_config.eval_batch_size, inputs=input_manifest(config),
      feature_arrays={k: dict(dtype=str(s.dtype), shape=[str(d) for d in s.shape])
                      for k, s in specs.items()},
      outputs=[dict(name=k, dtype=str(a.dtype), shape=list(a.shape[1:]))
               for k, a in outputs.items()])
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's is 0700: an artifact is for others to read
  try:
    with open(os.path.join(tmp, serving.FUNCTION), 'wb') as f:
      f.write(exported.serialize())
    np.savez(os.path.join(tmp, serving.PARAMS), **{f'p{i}': x for i, x in enumerate(leaves)})
    with open(os.path.join(tmp, serving.MANIFEST), 'w') as f:
      json.dump(manifest, f, indent=1)
    if os.path.exists(directory):
      shutil.rmtree(directory)
    os.replace(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return manifest


def export_checkpoint(config, output_dir, checkpoint_path=None, platforms=('cpu',),
                      use_given_config=False):
  """scripts/export.py: exports model_dir's latest checkpoint (or the one at
  checkpoint_path, see checkpoint.locate), built from the config model_dir records unless
  use_given_config; returns the manifest."""
  config = run_dir.config_of_checkpoint(validate(config), use_given_config)
  trainer = Trainer(config, example=dict(features=zero_features(config)))
  state = checkpoint.restore_or_fail(config, trainer, checkpoint_path)
  return export(trainer, state, output_dir, platforms)


def artifact_size(directory):
  return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))


def _plain(value):
  return list(value) if isinstance(value, tuple) else value


# --- export_config during training -----------------------------------------------------


def improved(value, best, bigger):
  """Whether `value` is strictly better than `best` (None: no best yet), as EasyRec's
  best exporter and early stop compare."""
  return best is None or (value > best if bigger else value < best)


def metric_of(result, export_config):
  """best_exporter_metric's value in an evaluation, or a ConfigError naming the field."""
  name = export_config.best_exporter_metric
  if name not in result:
    names = ', '.join(k for k in result if not k.startswith('oracle_'))
    raise ConfigError(f'export_config.best_exporter_metric: {name!r} is not a metric of this '
                      f'model (its metrics: {names})')
  return result[name]


def best_step(history, export_config):
  """The step of the strictly best evaluation in {step: result}, scanned in step order
  (the first of equal values), or None."""
  best, at = None, None
  for step in sorted(history):
    value = metric_of(history[step], export_config)
    if improved(value, best, export_config.metric_bigger):
      best, at = value, step
  return at


def should_stop(history, export_config):
  """EasyRec's early stop over the evaluations so far ({step: result}): early_stop_func's
  answer when set (called with them and early_stop_params), else whether an evaluation
  comes max_check_steps or more steps after the strictly best one (stop_if_no_increase_hook,
  or _decrease_ with metric_bigger false)."""
  if not export_config.enable_early_stop or not history:
    return False
  if export_config.early_stop_func:
    return bool(_function(export_config.early_stop_func)(
        {s: dict(r) for s, r in sorted(history.items())}, export_config.early_stop_params))
  return max(history) - best_step(history, export_config) >= export_config.max_check_steps


def stop_reason(export_config):
  """Why should_stop said stop, for the log."""
  if export_config.early_stop_func:
    return f'export_config.early_stop_func {export_config.early_stop_func} said so'
  return (f'{export_config.best_exporter_metric} has not improved for '
          f'{export_config.max_check_steps} steps (export_config.max_check_steps)')


def _function(path):
  module, _, name = path.rpartition('.')
  try:
    return getattr(importlib.import_module(module), name)
  except (ImportError, AttributeError) as e:
    raise ConfigError(f'export_config.early_stop_func: cannot load {path!r}: {e}') from None


class Exporters:
  """export_config's exporter during a training run (process 0 writes; every process calls,
  and every process decides the same stop)."""

  def __init__(self, config, ckpt, lead):
    self.config, self.export_config, self.ckpt, self.lead = config, config.export_config, ckpt, lead
    self.root = os.path.join(config.model_dir, 'export')

  def directory(self, kind, step=None):
    base = os.path.join(self.root, kind)
    return base if step is None else os.path.join(base, str(step))

  def after_eval(self, trainer, state, step, history):
    """Exports as exporter_type says once `step`, the newest of `history`, is evaluated."""
    kind = self.export_config.exporter_type
    if kind == 'latest' or (kind == 'best' and best_step(history, self.export_config) == step):
      if kind == 'best':
        self._keep_best_checkpoint(step)
      self._export(trainer, state, kind, step)

  def at_end(self, trainer, state):
    if self.export_config.exporter_type == 'final':
      self._export(trainer, state, 'final', int(state['step']))

  def _export(self, trainer, state, kind, step):
    if jax.process_count() > 1:  # the state spans processes: all take part in gathering it
      state = dict(state, **multihost_utils.process_allgather(
          {k: state[k] for k in ('params', 'batch_stats')}, tiled=True))
    if not self.lead:
      return
    path = self.directory(kind, step)
    export(trainer, state, path)
    log.info('exported step %d (%s exporter) to %s', step, kind, path)
    if kind != 'final':  # exports_to_keep: only for best and latest, as EasyRec
      old = sorted((int(d) for d in os.listdir(self.directory(kind)) if d.isdigit()))
      for s in old[:-self.export_config.exports_to_keep]:
        shutil.rmtree(self.directory(kind, s))

  def _keep_best_checkpoint(self, step):
    """Copies checkpoint `step` to best_ckpt/<step>, replacing the previous best."""
    if not self.lead:
      return
    self.ckpt.wait()
    best = os.path.join(self.config.model_dir, 'best_ckpt')
    tmp = f'{best}.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(os.path.join(self.ckpt.directory, str(step)), os.path.join(tmp, str(step)))
    shutil.rmtree(best, ignore_errors=True)
    os.replace(tmp, best)
