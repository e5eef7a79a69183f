"""model_dir is the run's record: the resolved config, a lock held while training,
checkpoints and metrics.

  pipeline.config  the run's config in EasyRec's text form (as EasyRec copies it there)
  config.json      the same config as JSON: what a rerun is compared with
  run.lock         flock-ed by the training process; says who holds it

A rerun resumes only a compatible config: fields in RESUMABLE are applied and logged
(`old -> new`); any other difference is an error listing every differing field, unless
the user starts fresh (the old contents are moved aside) or accepts the new config.
evaluate.py / predict.py use the recorded config unless told otherwise.
"""

import fcntl
import fnmatch
import json
import logging
import os
import shlex
import socket
import sys
import time

import jax
import ml_collections
import numpy as np

from mmoe_jax import data as data_lib
from mmoe_jax.config import ConfigError, complete, validate
from mmoe_jax.config.easyrec import to_text
from mmoe_jax.training.schedules import base_learning_rate

log = logging.getLogger('mmoe_jax')

PIPELINE_CONFIG, CONFIG_JSON, LOCK = 'pipeline.config', 'config.json', 'run.lock'

# Field paths (fnmatch patterns) that a resumed run may change: how long it runs, how
# often it logs, checkpoints and evaluates, how it evaluates, how steps are dispatched,
# and the learning rate and its schedule. None of them changes what a checkpoint holds.
RESUMABLE = (
    'train_config.num_steps',
    'data_config.num_epochs',
    'train_config.log_step_count_steps',
    'train_config.save_checkpoints_steps',
    'train_config.keep_checkpoint_max',
    'train_config.save_summary_steps',
    'train_config.steps_per_dispatch',
    'data_config.input_mode',
    'eval_config.*',
    'data_config.eval_batch_size',
    'train_config.optimizer_config.*.learning_rate.*',
    'export_config.*',  # what is exported and when training stops early
    'train_config.fine_tune_*',  # read only by a run with no checkpoint yet
)
# Not compared: where the record lives (a moved directory is the same run).
NOT_COMPARED = ('model_dir',)


class ModelDirInUse(RuntimeError):
  """Another process holds the model_dir's lock."""


class Run:
  """A training run's hold on its model_dir: the config it runs, and the lock."""

  def __init__(self, config, lock_file):
    self.config = config
    self._lock_file = lock_file

  def close(self):
    """Releases the lock (the OS releases it too when the process ends, killed or not)."""
    if self._lock_file is not None:
      self._lock_file.close()
      self._lock_file = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_run(config, fresh=False, accept_config=False):
  """Takes `config.model_dir` for a training run of a validated `config`.

  Locks the directory, compares `config` with the recorded one (see the module
  docstring), resolves an unset synthetic.train_rows, and records the result. On a
  multi-host run process 0 does all of this; the others take the config it recorded.

  Args:
    fresh: start a new run: move the directory's contents to `<model_dir>.old-<time>`.
    accept_config: continue from the checkpoint with `config`, whatever differs.

  Returns:
    A Run: its `config` is the one to train with; close() it when training ends.

  Raises:
    ModelDirInUse: another run holds the directory (before anything is touched).
    ConfigError: the config differs from the record in fields a resume may not change.
  """
  if fresh and accept_config:
    raise ValueError('--fresh and --accept_config: pass one of them')
  model_dir = config.model_dir
  lock_file = None
  if jax.process_index() == 0:
    os.makedirs(model_dir, exist_ok=True)
    lock_file = _lock(model_dir)
    try:
      config = _settle(config, fresh, accept_config)
      write_record(config)
    except BaseException:
      lock_file.close()
      raise
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('run dir recorded')
    if jax.process_index() != 0:
      config = _train_rows(config, read_record(model_dir), lambda *a: None)
  return Run(config, lock_file)


def config_of_checkpoint(config, use_given_config=False):
  """The config to evaluate or predict with model_dir's checkpoint: the recorded one,
  unless `use_given_config`; logs which, and every field where the two differ."""
  model_dir = config.model_dir
  record = read_record(model_dir)
  if record is None:
    log.info('%s records no config (a run from before records): using the given config',
             model_dir)
    return config
  config = _train_rows(config, record, lambda *a: None)
  diffs = differences(record, plain(config))
  if use_given_config:
    log.info('using the given config (--use_given_config), not the one recorded in %s%s',
             _record_path(model_dir), ', the same' if not diffs else '; they differ in:')
    for path, old, new in diffs:
      log.info('  %s: recorded %s, given %s (used)', path, _show(old), _show(new))
    return config
  log.info('using the config recorded in %s (--use_given_config: the given one)%s',
           _record_path(model_dir), '; the given config is the same' if not diffs else
           '; the given config differs in:')
  for path, old, new in diffs:
    log.info('  %s: given %s, recorded %s (used)', path, _show(new), _show(old))
  recorded = complete(dict(record, model_dir=model_dir))
  return validate(recorded)


def resume_learning_rate(state, config):
  """`state` with the config's base learning rate, the one place the state holds a
  config value (hparams.learning_rate): a resumed run trains at the rate it is given."""
  old = state['hparams']['learning_rate']
  new = np.float32(base_learning_rate(config.train_config))
  if float(old) == float(new):
    return state
  log.info('hparams.learning_rate of the restored state: %.6g -> %.6g', float(old), float(new))
  return dict(state, hparams=dict(state['hparams'], learning_rate=jax.device_put(
      np.asarray(new, old.dtype), old.sharding)))


def read_record(model_dir):
  """The recorded config (config.json) as a dict of plain values, or None."""
  path = os.path.join(model_dir, CONFIG_JSON)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_record(config):
  """Writes pipeline.config and config.json into config.model_dir (each atomically)."""
  model_dir = config.model_dir
  _write(os.path.join(model_dir, CONFIG_JSON), json.dumps(plain(config), indent=1) + '\n')
  _write(os.path.join(model_dir, PIPELINE_CONFIG), to_text(config))


def plain(config):
  """A config as JSON values: dicts, lists, scalars."""
  if isinstance(config, (dict, ml_collections.ConfigDict)):
    return {k: plain(v) for k, v in config.items()}
  if isinstance(config, (list, tuple)):
    return [plain(v) for v in config]
  return config


def differences(old, new):
  """[(field path, old value, new value)] where two plain configs differ; a value missing
  on one side is MISSING. Paths as in errors: `a.b[2].c`."""
  old, new = _flatten(old), _flatten(new)
  paths = list(new) + [p for p in old if p not in new]
  return [(p, old.get(p, MISSING), new.get(p, MISSING)) for p in paths
          if p not in NOT_COMPARED and old.get(p, MISSING) != new.get(p, MISSING)]


MISSING = '(absent)'


def resumable(path):
  return any(fnmatch.fnmatchcase(path, pattern) for pattern in RESUMABLE)


def _settle(config, fresh, accept_config):
  """The config this run trains with, after comparing it with the record."""
  model_dir = config.model_dir
  if fresh:
    _move_aside(model_dir)
  record = read_record(model_dir)
  config = _train_rows(config, record, log.info)
  if record is None:
    if _has_checkpoint(model_dir):
      log.info('%s records no config (a run from before records): recording this one',
               model_dir)
    return config
  diffs = differences(record, plain(config))
  if not diffs:
    return config
  if not _has_checkpoint(model_dir):
    log.info('%s has no checkpoint to resume: training with the given config, which differs '
             'from the recorded one in:', model_dir)
    _log_diffs(diffs)
    return config
  fixed = [d for d in diffs if not resumable(d[0])]
  if fixed and not accept_config:
    lines = ''.join(f'\n  {p}: {_show(old)} -> {_show(new)}' for p, old, new in fixed)
    also = [p for p, _, _ in diffs if resumable(p)]
    raise ConfigError(
        f'{model_dir}: the config differs from the one its checkpoints were trained with '
        f'({_record_path(model_dir)}) in {len(fixed)} field(s) a resumed run may not '
        f'change:{lines}\n'
        + (f'(These may change and would be applied: {", ".join(also)}.)\n' if also else '')
        + f'Rerun with --fresh to start a new run (the old contents are moved to '
        f'{model_dir.rstrip(os.sep)}.old-<time>), with --accept_config to continue from the '
        'checkpoint with this config, or with another --config.model_dir.')
  log.info('resuming %s with changed fields%s:', model_dir,
           ' (--accept_config)' if fixed else '')
  _log_diffs(diffs)
  return config


def _train_rows(config, record, info):
  """`config` with an unset synthetic.train_rows resolved: the rows of the recorded run
  (its data), or for a new run the size synthetic_train_rows gives."""
  if config.train_input_path or config.synthetic.train_rows:
    return config
  recorded = (record or {}).get('synthetic', {}).get('train_rows')
  if recorded:
    rows, why = recorded, f'unset: the rows this run trains on, as recorded in {CONFIG_JSON}'
  else:
    rows, why = data_lib.synthetic_train_rows(config)
  info('synthetic.train_rows: %d rows (%s)', rows, why)
  config.synthetic.train_rows = rows
  return config


def _log_diffs(diffs):
  for path, old, new in diffs:
    log.info('  %s: %s -> %s', path, _show(old), _show(new))


def _lock(model_dir):
  """Takes model_dir's lock for this process, or raises ModelDirInUse naming its holder."""
  path = os.path.join(model_dir, LOCK)
  f = open(path, 'a+')  # pylint: disable=consider-using-with (held for the whole run)
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or 'a process that has not written its name yet'
    f.close()
    raise ModelDirInUse(f'{os.path.abspath(model_dir)} is in use by another run ({holder}); '
                        'wait for it to end, or use another --config.model_dir') from None
  f.seek(0)
  f.truncate()
  f.write(f'pid {os.getpid()} on {socket.gethostname()}: '
          f'{" ".join(map(shlex.quote, sys.argv))}\n')
  f.flush()
  return f


def _move_aside(model_dir):
  """--fresh: moves model_dir's contents (all but the lock) to a sibling directory."""
  entries = [e for e in sorted(os.listdir(model_dir)) if e != LOCK]
  if not entries:
    log.info('--fresh: %s is empty, nothing to move aside', model_dir)
    return
  base = f'{os.path.abspath(model_dir)}.old-{time.strftime("%Y%m%d-%H%M%S")}'
  dest, n = base, 1
  while os.path.exists(dest):
    dest, n = f'{base}-{n}', n + 1
  os.makedirs(dest)
  for entry in entries:
    os.rename(os.path.join(model_dir, entry), os.path.join(dest, entry))
  log.info('--fresh: moved the previous contents of %s (%s) to %s', model_dir,
           ', '.join(entries), dest)


def _has_checkpoint(model_dir):
  ckpts = os.path.join(model_dir, 'checkpoints')
  return os.path.isdir(ckpts) and any(e.isdigit() for e in os.listdir(ckpts))


def _record_path(model_dir):
  return os.path.join(model_dir, CONFIG_JSON)


def _flatten(value, path=''):
  """{field path: leaf} of a plain config; an empty list or message is a leaf."""
  if isinstance(value, dict) and value:
    out = {}
    for k, v in value.items():
      out.update(_flatten(v, f'{path}.{k}' if path else k))
    return out
  if isinstance(value, list) and value:
    out = {}
    for i, v in enumerate(value):
      out.update(_flatten(v, f'{path}[{i}]'))
    return out
  return {path: value}


def _show(value):
  return value if value is MISSING else json.dumps(value)


def _write(path, text):
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)
