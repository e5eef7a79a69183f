"""Training and evaluation: the library behind scripts/train.py, evaluate.py, predict.py.

The train state is a plain dict {step, params, batch_stats, opt_state, rng, hparams,
nonfinite_step}; one jitted, pure step updates it (donated), and the whole state is
what a checkpoint holds, so re-running the same command resumes exactly. hparams holds
the scalar hyper-parameters that a vmapped sweep may vary per replica (learning_rate).
"""

import functools
import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import data as data_lib
from mmoe_jax import metrics as metrics_lib
from mmoe_jax import models
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import model_params, validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import input_pipeline, losses, precision
from mmoe_jax.training.input_pipeline import BatchSampler, batch  # re-exported: train_lib's API
from mmoe_jax.training.optimizer import Optimizer, base_learning_rate

log = logging.getLogger('mmoe_jax')


def train_and_evaluate(config):
  """Trains as `config` says (resuming from model_dir), evaluates; returns final metrics."""
  config = validate(config)
  lead = jax.process_index() == 0  # multi-host: process 0 writes the logs and metrics
  os.makedirs(config.model_dir, exist_ok=True)
  for turn in ('lead', 'rest'):  # the synthetic files and caches are written once
    if lead == (turn == 'lead'):
      train_data, eval_data, oracle = data_lib.datasets(config, log=log.info)
      eval_data = eval_data and limit_eval(eval_data, config)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'input written: {turn}')
  batch_size = config.data_config.batch_size
  num_steps = total_steps(config, train_data.num_rows)

  trainer = Trainer(config, example=batch(train_data, np.arange(min(batch_size, 2))))
  ckpt = checkpoint_lib.Checkpointer(config.model_dir, config.train_config.keep_checkpoint_max)
  for line in trainer.layout():
    log.info('%s', line)
  state = restore(ckpt, trainer) or trainer.create_state()
  start = int(state['step'])
  if start:
    log.info('resumed from %s at step %d', ckpt.directory, start)
  writer = SummaryWriters(config.model_dir) if lead else None
  sampler = BatchSampler(train_data.num_rows, batch_size, config.seed,
                         config.data_config.shuffle)
  train_input = input_pipeline.make(config, trainer, train_data, sampler)
  log.info('input_mode %s', train_input.mode)
  train_cfg = config.train_config
  bar = tqdm.tqdm(total=num_steps * batch_size, initial=start * batch_size, unit='ex',
                  unit_scale=True, desc='train', dynamic_ncols=True, mininterval=1.0,
                  disable=not lead)
  last_time, last_step = time.perf_counter(), start
  result = {}
  # Each chunk of steps ends on or before the next log or checkpoint step (input_pipeline).
  for steps in train_input.chunks(start, num_steps):
    state, step_metrics = train_input.run(state, steps)
    bar.update(len(steps) * batch_size)
    done = steps.stop
    if done % train_cfg.log_step_count_steps == 0 or done == num_steps:
      check_finite(state, ckpt)
      now = time.perf_counter()
      scalars = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      scalars['examples_per_sec'] = (done - last_step) * batch_size / (now - last_time)
      last_time, last_step = now, done
      if lead:
        bar.write(f'step {done}: ' + ' '.join(f'{k}={v:.5g}' for k, v in scalars.items()),
                  file=bar.fp)
        writer.scalars('train', done, scalars)
    if done % train_cfg.save_checkpoints_steps == 0 or done == num_steps:
      check_finite(state, ckpt)
      ckpt.save(done, state)
      if eval_data is not None:
        result = trainer.evaluate(state, eval_data, oracle)
        if lead:
          record_eval(config.model_dir, writer, done, result)
          bar.write(f'eval at step {done}: {json.dumps(result)}', file=bar.fp)
      last_time = time.perf_counter()  # examples/s counts training steps only
  train_input.close()
  bar.close()
  ckpt.wait()
  if lead:
    writer.close()
  if eval_data is not None and start >= num_steps:  # a finished run, rerun: report it again
    result = trainer.evaluate(state, eval_data, oracle)
  return dict(step=int(state['step']), **result)


def evaluate_checkpoint(config, input_path=None):
  """Metrics of the latest checkpoint in model_dir on `input_path` (default eval_input_path)."""
  config = validate(config)
  path = input_path or data_lib.input_paths(config, log=log.info)[1]
  eval_data = load_eval(path, config)
  trainer = Trainer(config, example=batch(eval_data, np.arange(1)))
  state = restore_or_fail(config, trainer)
  result = trainer.evaluate(state, eval_data, data_lib.load_oracle(path, config))
  return dict(step=int(state['step']), **result)


def predict(config, input_path):
  """Predictions of the latest checkpoint for every row of a CSV, in input order."""
  config = validate(config)
  rows = data_lib.load(input_path, config, log=log.info)
  trainer = Trainer(config, example=batch(rows, np.arange(1)))
  return trainer.predict(restore_or_fail(config, trainer), rows)


def write_predictions(predictions, path):
  """Writes EasyRec's probs_/y_ outputs as CSV columns, logits_ left out.

  A [N, C] output gives one column per class, probs_<t>_<k>; EasyRec's probs_<t>_1 is the
  same column as class 1's, so it is written once. A multi-class tower also gets
  probs_<t>_y (the top probability) and y_<t> (the top class, an integer).
  """
  import pyarrow as pa
  import pyarrow.csv as pa_csv
  columns = {}
  for name, value in predictions.items():
    if name.startswith('logits_'):
      continue
    if value.ndim == 1:
      columns[name] = value
    else:
      columns.update({f'{name}_{k}': value[:, k] for k in range(value.shape[1])})
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  pa_csv.write_csv(pa.table(columns), path)


def load_eval(path, config):
  """The eval rows of a file, limited as limit_eval says."""
  return limit_eval(data_lib.load(path, config, log=log.info), config)


def limit_eval(columns, config):
  """The eval rows: all of them, or the first eval_config.num_examples (EasyRec)."""
  limit = config.eval_config.num_examples
  return columns.take(np.arange(limit)) if 0 < limit < columns.num_rows else columns


def restore_or_fail(config, trainer):
  ckpt = checkpoint_lib.Checkpointer(config.model_dir, config.train_config.keep_checkpoint_max)
  state = restore(ckpt, trainer)
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first '
                            '(scripts/train.py with the same config)')
  return state


def restore(ckpt, trainer):
  """The latest checkpoint laid out on this run's mesh (any device count), or None."""
  return ckpt.restore_latest(trainer.abstract_state(), vocab_rows=trainer.vocab_rows)


def total_steps(config, num_rows):
  """num_steps, capped by num_epochs over the data when both are set (as EasyRec)."""
  batch_size = config.data_config.batch_size
  by_epochs = config.data_config.num_epochs * -(-num_rows // batch_size)
  steps = [s for s in (config.train_config.num_steps, by_epochs) if s > 0]
  return min(steps)


class Trainer:
  """The model, optimizer and jitted steps for one config."""

  def __init__(self, config, example):
    self.config = config
    self.mesh = sharding_lib.make_mesh(config.sharding)
    self.model = models.build_model(config, sharding_lib.vocab_multiple(config, self.mesh))
    self.vocab_rows = {f.embedding_name: f.vocab_size for f in self.model.features
                       if f.vocab_size}
    self.towers = model_params(config.model_config).task_towers
    self.l2_regularization = model_params(config.model_config).l2_regularization
    self.tower_specs = models.tower_specs(config)
    self.optimizer = Optimizer(config.train_config, self.model.features)
    self.tx, self.schedule = self.optimizer.tx, self.optimizer.schedule
    self.dtype = models.compute_dtype(config)
    self.example = example
    self.batch_sharding = sharding_lib.batch_sharding(self.mesh, config.sharding)
    self._predict = jax.jit(self._predict_fn, out_shardings=NamedSharding(self.mesh, P()))

  # The state lives sharded as config.sharding says: created in place (no table is ever
  # whole on one device), and the step takes and returns it in that layout. (Built on
  # first use: they need the example batch.)
  @functools.cached_property
  def _state_layout(self):
    return sharding_lib.state_sharding(self.mesh, self.config.sharding,
                                       jax.eval_shape(self.init_state))

  @property
  def state_sharding(self):
    return self._state_layout[0]

  @functools.cached_property
  def create_state(self):
    """init_state(seed), jitted to give the state in its sharded layout."""
    return jax.jit(self.init_state, out_shardings=self.state_sharding)

  @functools.cached_property
  def train_step(self):
    """_train_step(state, batch), jitted on the mesh; the state is donated."""
    sharding_lib.check_batch(self.config, self.mesh)
    return jax.jit(self._train_step, in_shardings=(self.state_sharding, self.batch_sharding),
                   out_shardings=(self.state_sharding, NamedSharding(self.mesh, P())),
                   donate_argnums=0)

  def init_state(self, seed=None, learning_rate=None):
    """A fresh state; seed and learning_rate default to the config's (either may be traced)."""
    seed = self.config.seed if seed is None else seed
    if learning_rate is None:
      learning_rate = base_learning_rate(self.config.train_config)
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = self.model.init({'params': init_key}, self.example['features'], train=False)
    params = variables['params']
    return dict(step=jnp.zeros((), jnp.int32), params=params,
                batch_stats=variables.get('batch_stats', {}), opt_state=self.optimizer.init(params),
                rng=dropout_key, hparams=dict(learning_rate=jnp.asarray(learning_rate, jnp.float32)),
                nonfinite_step=jnp.full((), -1, jnp.int32))

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state: the target of a restore."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        jax.eval_shape(self.init_state), self.state_sharding)

  def layout(self):
    """Log lines: the mesh, each table's layout, dimensions kept whole."""
    return sharding_lib.describe(self.mesh, self.state_sharding, jax.eval_shape(self.init_state),
                                 self.vocab_rows) + self._state_layout[1]

  def _train_step(self, state, batch):
    rng = jax.random.fold_in(state['rng'], state['step'])
    # A lazy optimizer differentiates the looked-up vectors, not its tables (optimizer.py).
    dense, tables = self.optimizer.split(state['params'])

    def loss_fn(dense, perturbations):
      params = self.optimizer.merge(dense, tables)
      variables = {'params': precision.compute_params(params, self.dtype),
                   'batch_stats': state['batch_stats']}
      if perturbations:
        variables['perturbations'] = perturbations
      (logits, aux), updated = self.model.apply(
          variables, batch['features'], train=True, mutable=['batch_stats'],
          rngs={'dropout': rng})
      loss, terms = losses.total_loss(
          logits, aux, params, batch['labels'], self.towers, self.l2_regularization,
          self.config.model_config.embedding_regularization)
      return loss, (terms, updated.get('batch_stats', {}))

    (grads, lookup_grads), (terms, batch_stats) = jax.grad(
        loss_fn, argnums=(0, 1), has_aux=True)(
            dense, self.optimizer.perturbations(batch['features']))
    params, opt_state = self.optimizer.apply(grads, lookup_grads, state['opt_state'],
                                             state['params'], batch['features'],
                                             state['hparams']['learning_rate'])
    step = state['step']
    # Remember the first step whose loss was not finite; the loop checks it at log and
    # checkpoint time, so no step waits on a host round trip.
    bad = ~jnp.isfinite(terms['total_loss']) & (state['nonfinite_step'] < 0)
    new_state = dict(state, step=step + 1, params=params, batch_stats=batch_stats,
                     opt_state=opt_state, nonfinite_step=jnp.where(bad, step, state['nonfinite_step']))
    return new_state, dict(terms, learning_rate=self.optimizer.rate(
        step, state['hparams']['learning_rate']))

  def _predict_fn(self, params, batch_stats, features):
    logits, aux = self.model.apply({'params': params, 'batch_stats': batch_stats}, features,
                                   train=False)
    return models.predictions(logits, self.tower_specs)

  def predict(self, state, columns):
    """EasyRec's prediction dict over all rows, as numpy, in row order."""
    chunks = [jax.device_get(self._predict(state['params'], state['batch_stats'],
                                           batch(columns, rows)['features']))
              for rows in eval_chunks(columns.num_rows, self.config.data_config.eval_batch_size)]
    n = columns.num_rows
    return {k: np.concatenate([c[k] for c in chunks])[:n] for k in chunks[0]}

  def evaluate(self, state, columns, oracle=None):
    """Metrics over the whole eval set (see tower_results)."""
    return tower_results(self.towers, self.predict(state, columns), columns, oracle)


def eval_chunks(num_rows, eval_batch_size):
  """Row indices of the eval batches: eval_batch_size rows each, the last one padded with
  row 0 (callers trim it), so that every call has the same shape and compiles once."""
  size = min(eval_batch_size, num_rows)
  for start in range(0, num_rows, size):
    rows = np.arange(start, start + size)
    rows[rows >= num_rows] = 0
    yield rows


def tower_results(towers, predictions, columns, oracle=None):
  """Each tower's metrics; oracle_auc_<tower> where the true probabilities are known.

  `oracle` holds the true probability of every row of the eval file, by label name; it
  lines up with `columns` unless malformed rows were skipped.
  """
  if oracle is not None and columns.skipped_rows:
    log.warning('not reporting oracle_auc: %d malformed eval rows were skipped',
                columns.skipped_rows)
    oracle = None
  result = {}
  for tower in towers:
    result.update(metrics_lib.tower_metrics(tower, predictions, columns.labels))
    if oracle is not None and tower.label_name in oracle:
      result[f'oracle_auc_{tower.tower_name}'] = metrics_lib.auc(
          columns.labels[tower.label_name], oracle[tower.label_name][:columns.num_rows])
  return result


def check_finite(state, ckpt):
  bad = int(state['nonfinite_step'])
  if bad >= 0:
    last = ckpt.latest_step()
    raise FloatingPointError(
        f'total_loss is not finite at step {bad + 1}; training stopped. The last checkpoint '
        f'({"step " + str(last) if last else "none"}) is intact. Lower the learning rate, '
        'set train_config.gradient_clipping_by_norm, or check the input for extreme values.')


def record_eval(model_dir, writer, step, result):
  with open(os.path.join(model_dir, 'metrics.jsonl'), 'a') as f:
    f.write(json.dumps(dict(step=step, **result)) + '\n')
  writer.scalars('eval', step, result)


class SummaryWriters:
  """TensorBoard event files: model_dir for training, model_dir/eval_val for evaluation."""

  def __init__(self, model_dir):
    from tensorboardX import SummaryWriter  # imported here: only training writes events
    self._writers = {'train': SummaryWriter(model_dir),
                     'eval': SummaryWriter(os.path.join(model_dir, 'eval_val'))}

  def scalars(self, kind, step, values):
    for name, value in values.items():
      self._writers[kind].add_scalar(name, value, step)
    self._writers[kind].flush()

  def close(self):
    for w in self._writers.values():
      w.close()
