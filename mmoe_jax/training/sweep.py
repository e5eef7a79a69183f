"""Sweeps: many runs trained at once by one jitted step, vmapped over a leading replica axis.

A sweep is a list of runs, each a config: a config file's get_config(arg) plus overrides
(big_vision's `sweep(add)`). Runs whose configs differ only in REPLICA_FIELDS (the seed, the
synthetic data's seed, the learning rate) have the same shapes and code, so they form one
group, trained as R replicas of `jax.vmap(Trainer._train_step)`: the state (params, optimizer
state, rng, learning rate) has a leading replica axis, and so do the data and the batch indices
where the replicas' data differ. Every other difference (model, task correlation, batch
size...) starts a new group; groups run one after another.

Replica r of a group computes exactly what `train_and_evaluate` computes for its config
alone: the same init (its seed), the same batches (BatchSampler of its seed), the same step.
The data lives on the device and each dispatch runs several steps (`lax.scan`), gathering the
batches inside the step from host-made index arrays [K, R, B]. With sharding.replica set
(e.g. ('data',)) the replicas, their data and their batch indices are split over those mesh
axes, so a sweep spreads over the devices.

Each group checkpoints under <workdir>/<group>/ and writes one JSON line per replica to
<workdir>/<group>/results.jsonl when it finishes; rerunning the sweep skips finished groups
and resumes the others from their checkpoints.
"""

import gc
import json
import logging
import math
import os
import re
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import data as data_lib
from mmoe_jax import metrics as metrics_lib
from mmoe_jax import models
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import import_config, load_config, validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import train_lib
from mmoe_jax.training.optimizer import base_learning_rate

log = logging.getLogger('mmoe_jax')

LEARNING_RATE_FIELDS = (
    'train_config.optimizer_config.adam_optimizer.learning_rate.constant_learning_rate.'
    'learning_rate',
    'train_config.optimizer_config.adam_optimizer.learning_rate.exponential_decay_learning_rate.'
    'initial_learning_rate',
)
REPLICA_FIELDS = ('seed', 'synthetic.seed') + LEARNING_RATE_FIELDS
# Shown in results rows and summaries as these short names.
SHORT_NAMES = {'seed': 'seed', 'synthetic.seed': 'data_seed',
               **{f: 'learning_rate' for f in LEARNING_RATE_FIELDS}}


class Run:
  """One run of a sweep: get_config(arg) of the config file, then `overrides` (dotted paths)."""

  def __init__(self, arg='', **overrides):
    self.arg, self.overrides = arg, overrides

  def setting(self):
    """What distinguishes this run from its replicas: arg and non-replica overrides."""
    return dict(run=self.arg, **{k: v for k, v in self.overrides.items()
                                 if k not in REPLICA_FIELDS})

  def config(self, module, common_overrides=()):
    config = module.get_config(self.arg or None)
    for path, value in (*self.overrides.items(), *dict(common_overrides).items()):
      set_path(config, path, value)
    return validate(config)


def set_path(config, path, value):
  *parents, leaf = path.split('.')
  node = config
  for key in parents:
    node = node[key]
  node[leaf] = value


def get_path(config, path):
  for key in path.split('.'):
    if key not in config:
      return None
    config = config[key]
  return config


def load_runs(config_file, arg=None, seeds=0):
  """(module, runs): the file's `sweep(add, arg)` runs, or with seeds=N, N seeds of get_config(arg)."""
  if config_file.endswith('.py'):
    module = import_config(config_file)
  else:  # an EasyRec pipeline config: seeds of it (it has no sweep)
    module = types.SimpleNamespace(get_config=lambda _: load_config(config_file))
  runs = []
  if seeds:
    runs = [Run(arg or '', seed=s) for s in range(seeds)]
  elif hasattr(module, 'sweep'):
    module.sweep(lambda arg='', **overrides: runs.append(Run(arg, **overrides)), arg)
  else:
    raise ValueError(f'{config_file} has no sweep(add, arg) function: pass --seeds=N to train '
                     'N seeds of its config')
  if not runs:
    raise ValueError(f'{config_file}: the sweep declared no runs')
  return module, runs


def group_runs(module, runs, common_overrides=(), max_replicas=0):
  """Validated configs grouped by everything except REPLICA_FIELDS: [(name, [(run, config)])]."""
  groups = {}
  for run in runs:
    config = run.config(module, common_overrides)
    shape = config.to_dict()
    for path in REPLICA_FIELDS:
      if get_path(config, path) is not None:
        set_path(shape, path, None)
    groups.setdefault(json.dumps(shape, sort_keys=True, default=str), []).append((run, config))
  out = []
  for members in groups.values():
    size = max_replicas or len(members)
    for start in range(0, len(members), size):
      slug = re.sub(r'[^A-Za-z0-9=.,_-]+', '_', members[0][0].arg or 'default')
      out.append((f'{len(out):03d}_{slug}', members[start:start + size]))
  return out


class ReplicaGroup:
  """R runs of one shape: their data, the vmapped init, step and evaluation."""

  def __init__(self, configs):
    self.configs = configs
    base = configs[0]
    self.num_replicas = len(configs)
    # One copy of the data when every replica reads the same (only seeds differ).
    data_keys = {json.dumps([c.train_input_path, c.eval_input_path, c.synthetic.to_dict()],
                            sort_keys=True) for c in configs}
    self.shared_data = len(data_keys) == 1
    trains, evals, self.oracles = zip(*(data_lib.datasets(c, log=log.info) for c in (
        configs[:1] if self.shared_data else configs)))
    self.num_rows = trains[0].num_rows
    if any(t.num_rows != self.num_rows for t in trains):
      raise ValueError('replicas of a group must have the same number of training rows')
    self.train = self._on_device(trains)
    example = train_lib.batch(trains[0], np.arange(2))
    # Per-replica data is only kept on the device (a 100-replica study holds gigabytes).
    self.train_columns = trains if self.shared_data else None
    del trains
    evals = [e and train_lib.limit_eval(e, base) for e in evals]
    self.eval_columns = evals if evals[0] is not None else None
    self.eval = self._on_device(evals) if self.eval_columns else None
    self.data_axis = None if self.shared_data else 0

    self.trainer = train_lib.Trainer(base, example=example)
    self.batch_size = base.data_config.batch_size
    self.num_steps = train_lib.total_steps(base, self.num_rows)
    self.samplers = [train_lib.BatchSampler(self.num_rows, self.batch_size, c.seed,
                                            c.data_config.shuffle) for c in configs]
    self.seeds = np.array([c.seed for c in configs], np.int32)
    self.learning_rates = np.array([base_learning_rate(c.train_config) for c in configs],
                                   np.float32)
    # sharding.replica (default: none) spreads the replicas over those mesh axes; each
    # replica's own state keeps the rest of its layout (config.sharding).
    replica_axes = tuple(base.sharding.replica)
    state_sharding = replicas = indices = None
    if replica_axes:
      mesh = self.trainer.mesh
      state_sharding = sharding_lib.with_replica_axis(self.trainer.state_sharding,
                                                      base.sharding, self.num_replicas)
      replicas = NamedSharding(mesh, P(replica_axes))
      indices = NamedSharding(mesh, P(None, replica_axes))
    self.init = jax.jit(jax.vmap(self.trainer.init_state), out_shardings=state_sharding)
    self.run_steps = jax.jit(self._run_steps, donate_argnums=0,
                             in_shardings=(state_sharding, None, indices),
                             out_shardings=(state_sharding, None) if replica_axes else None)
    self._predict = jax.jit(jax.vmap(self._predict_fn, in_axes=(0, 0, self.data_axis, None)))
    if replica_axes and not self.shared_data:  # each device holds its replicas' data
      self.train, self.eval = jax.device_put((self.train, self.eval), replicas)

  def _on_device(self, columns):
    """{'features', 'labels'} arrays, [N, ...] shared or stacked [R, N, ...]."""
    tree = [dict(features=c.features, labels=c.labels) for c in columns]
    stacked = tree[0] if len(tree) == 1 else jax.tree.map(lambda *a: np.stack(a), *tree)
    return jax.device_put(stacked)

  def init_state(self):
    return self.init(self.seeds, self.learning_rates)

  def abstract_state(self):
    return jax.eval_shape(self.init, self.seeds, self.learning_rates)

  def _run_steps(self, state, data, indices):
    """K steps of every replica: indices [K, R, B] -> (state, metrics of each step [K, R])."""

    def step(state, data, idx):
      batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
      return self.trainer._train_step(state, batch)

    vstep = jax.vmap(step, in_axes=(0, self.data_axis, 0))
    return jax.lax.scan(lambda s, idx: vstep(s, data, idx), state, indices)

  def indices(self, step, count):
    """[count, R, B] int32: every replica's batches of steps step..step+count-1."""
    return np.stack([s.indices(step, count) for s in self.samplers], axis=1).astype(np.int32)

  def _predict_fn(self, params, batch_stats, data, rows):
    features = jax.tree.map(lambda a: jnp.take(a, rows, axis=0), data['features'])
    logits, aux = self.trainer.model.apply({'params': params, 'batch_stats': batch_stats},
                                           features, train=False)
    return models.predictions(logits, self.trainer.tower_specs), aux.get('gate_weights', {})

  def evaluate(self, state):
    """One dict of metrics per replica; gate_weights_<tower>: mean gate weight per expert."""
    n = self.eval_columns[0].num_rows
    size = min(self.trainer.config.data_config.eval_batch_size, n)
    preds, gates = [], []
    for start in range(0, n, size):
      rows = np.arange(start, start + size)
      rows[rows >= n] = 0  # pad the last chunk (one compiled shape); trimmed below
      p, g = jax.device_get(self._predict(state['params'], state['batch_stats'], self.eval,
                                          rows))
      keep = min(size, n - start)
      preds.append({k: v[:, :keep] for k, v in p.items()})
      gates.append({k: v[:, :keep].sum(axis=1) for k, v in g.items()})
    results = []
    for r in range(self.num_replicas):
      columns = self.eval_columns[0 if self.shared_data else r]
      predictions = {k: np.concatenate([p[k][r] for p in preds], axis=0) for k in preds[0]}
      result = {}
      for tower in self.trainer.towers:
        result.update(metrics_lib.tower_metrics(tower, predictions, columns.labels))
        oracle = self.oracles[0 if self.shared_data else r]
        if oracle is not None and tower.label_name in oracle and not columns.skipped_rows:
          result[f'oracle_auc_{tower.tower_name}'] = metrics_lib.auc(
              columns.labels[tower.label_name], oracle[tower.label_name][:n])
      for name in gates[0]:
        result[f'gate_weights_{name}'] = [
            round(float(w), 5) for w in sum(g[name][r] for g in gates) / n]
      results.append(result)
    return results


def steps_per_dispatch(train_config, limit=100):
  """Steps run by one dispatch: a divisor of the log and checkpoint intervals (so both land
  on their steps), at most `limit` (the index arrays for a dispatch stay small)."""
  every = math.gcd(train_config.log_step_count_steps, train_config.save_checkpoints_steps)
  return max(d for d in range(1, min(every, limit) + 1) if every % d == 0)


def train_group(name, members, workdir):
  """Trains (or resumes) one group; returns its results rows (also in <group>/results.jsonl)."""
  group_dir = os.path.join(workdir, name)
  done_file = os.path.join(group_dir, 'results.jsonl')
  if os.path.exists(done_file):
    log.info('%s: finished before, reading %s', name, done_file)
    with open(done_file) as f:
      return [json.loads(line) for line in f]
  runs, configs = zip(*members)
  group = ReplicaGroup(list(configs))
  base = configs[0]
  ckpt = checkpoint_lib.Checkpointer(group_dir, base.train_config.keep_checkpoint_max)
  state = ckpt.restore_latest(group.abstract_state()) or group.init_state()
  start = int(state['step'][0])
  if start:
    log.info('%s: resumed at step %d', name, start)
  log.info('%s: %d replicas x %d steps of batch %d (%s data)', name, group.num_replicas,
           group.num_steps, group.batch_size, 'shared' if group.shared_data else 'per-replica')
  k = steps_per_dispatch(base.train_config)
  train_cfg = base.train_config
  tic, metrics = time.perf_counter(), None
  step = start
  while step < group.num_steps:
    count = min(k, group.num_steps - step)
    state, metrics = group.run_steps(state, group.train, group.indices(step, count))
    step += count
    if step % train_cfg.log_step_count_steps == 0 or step == group.num_steps:
      loss = np.asarray(metrics['total_loss'][-1])
      log.info('%s step %d: total_loss mean %.5g (min %.5g, max %.5g) %.0f examples/s', name,
               step, np.nanmean(loss), np.nanmin(loss), np.nanmax(loss),
               (step - start) * group.batch_size * group.num_replicas
               / (time.perf_counter() - tic))
    if step % train_cfg.save_checkpoints_steps == 0 or step == group.num_steps:
      ckpt.save(step, state)
  ckpt.wait()
  final_loss = (np.asarray(metrics['total_loss'][-1]) if metrics is not None
                else np.full(group.num_replicas, np.nan))
  evals = group.evaluate(state) if group.eval_columns else [{}] * group.num_replicas
  nonfinite = np.asarray(state['nonfinite_step'])
  rows = []
  for r, (run, config) in enumerate(members):
    row = dict(group=name, replica=r, **run.setting(), step=int(state['step'][r]))
    row.update({SHORT_NAMES[p]: get_path(config, p) for p in REPLICA_FIELDS
                if get_path(config, p) is not None})
    row.update(train_total_loss=float(final_loss[r]), **evals[r])
    if nonfinite[r] >= 0:  # this replica diverged; the others are unaffected
      row['nonfinite_step'] = int(nonfinite[r]) + 1
    rows.append(row)
  with open(done_file + '.tmp', 'w') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)
  os.replace(done_file + '.tmp', done_file)
  return rows


def run_sweep(module, runs, workdir, common_overrides=(), max_replicas=0):
  """Trains every group; writes <workdir>/results.jsonl and summary.json; returns the summary."""
  os.makedirs(workdir, exist_ok=True)
  rows = []
  for name, members in group_runs(module, runs, common_overrides, max_replicas):
    rows += train_group(name, members, workdir)
    gc.collect()  # a group's data and state sit in reference cycles (jitted bound methods)
  with open(os.path.join(workdir, 'results.jsonl'), 'w') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)
  by = list(dict.fromkeys(k for run in runs for k in run.setting())) + ['learning_rate']
  table = summarize(rows, by)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(table, f, indent=1)
  return table


NOT_METRICS = ('group', 'replica', 'step', 'seed', 'data_seed', 'nonfinite_step')


def summarize(rows, by=('run', 'learning_rate')):
  """One entry per setting (rows equal in `by`): n, and mean, std, min, p10, p50, p90, max
  and the count of non-finite values of every numeric result."""
  settings = {}
  for row in rows:
    key = {k: row.get(k) for k in by}
    settings.setdefault(json.dumps(key, sort_keys=True), (key, []))[1].append(row)
  table = []
  for key, members in settings.values():
    stats = {}
    for metric in members[0]:
      values = [m.get(metric) for m in members]
      if metric in key or metric in NOT_METRICS or not all(
          isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        continue
      v = np.asarray(values, np.float64)
      finite = v[np.isfinite(v)]
      if not finite.size:
        stats[metric] = dict(nonfinite=len(v))
        continue
      q10, q50, q90 = np.quantile(finite, [0.1, 0.5, 0.9])
      stats[metric] = dict(mean=float(finite.mean()), std=float(finite.std()),
                           min=float(finite.min()), p10=float(q10), p50=float(q50),
                           p90=float(q90), max=float(finite.max()),
                           nonfinite=int(len(v) - finite.size))
    table.append(dict(key, n=len(members), metrics=stats))
  return table


def format_table(summary, metrics=None):
  """The summary as a markdown table: one row per setting, mean ± std (p10 / p50 / p90)."""
  metrics = metrics or sorted({m for s in summary for m in s['metrics']})
  keys = [k for k in summary[0] if k not in ('metrics', 'n')]
  lines = ['| ' + ' | '.join(keys + ['n'] + metrics) + ' |',
           '|' + '---|' * (len(keys) + 1 + len(metrics))]
  for s in summary:
    cells = [str(s[k]) for k in keys] + [str(s['n'])]
    for m in metrics:
      st = s['metrics'].get(m, {})
      cells.append(f"{st['mean']:.4f} ± {st['std']:.4f} ({st['p10']:.4f} / {st['p50']:.4f} / "
                   f"{st['p90']:.4f})" if 'mean' in st else '')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
