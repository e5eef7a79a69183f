"""Evaluation and prediction: EasyRec's outputs and metrics over every row of a file."""

import logging
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import data as data_lib
from mmoe_jax import metrics as metrics_lib
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import validate
from mmoe_jax.training import run_dir
from mmoe_jax.training.checkpoint import restore_or_fail
from mmoe_jax.training.input_pipeline import batch
from mmoe_jax.training.trainer import Trainer

log = logging.getLogger('mmoe_jax')


def predict_rows(trainer, state, columns):
  """EasyRec's prediction dict over all rows, as numpy, in row order."""
  # Each batch is placed explicitly, whole on every device of the mesh (and process).
  replicated = NamedSharding(trainer.mesh, P())
  chunks = [jax.device_get(trainer.predict_batch(
      state['params'], state['batch_stats'],
      sharding_lib.global_batch(batch(columns, rows)['features'], replicated, len(rows))))
            for rows in eval_chunks(columns.num_rows, trainer.config.data_config.eval_batch_size)]
  n = columns.num_rows
  return {k: np.concatenate([c[k] for c in chunks])[:n] for k in chunks[0]}


def evaluate(trainer, state, columns, oracle=None):
  """Metrics over the whole eval set (see tower_results)."""
  return tower_results(trainer.towers, predict_rows(trainer, state, columns), columns, oracle)


def evaluate_checkpoint(config, input_path=None, use_given_config=False):
  """Metrics of the latest checkpoint in model_dir on `input_path` (default eval_input_path),
  with the config model_dir records unless `use_given_config` (run_dir.config_of_checkpoint)."""
  config = run_dir.config_of_checkpoint(validate(config), use_given_config)
  path = input_path or data_lib.input_paths(config, log=log.info)[1]
  eval_data = load_eval(path, config)
  trainer = Trainer(config, example=batch(eval_data, np.arange(1)))
  state = restore_or_fail(config, trainer)
  result = evaluate(trainer, state, eval_data, data_lib.load_oracle(path, config))
  return dict(step=int(state['step']), **result)


def predict_checkpoint(config, input_path, use_given_config=False):
  """Predictions of the latest checkpoint for every row of a CSV, in input order, with the
  config model_dir records unless `use_given_config` (run_dir.config_of_checkpoint)."""
  config = run_dir.config_of_checkpoint(validate(config), use_given_config)
  # Labels are not read here, so they are not checked either.
  rows = data_lib.load(input_path, config, log=log.info, check_labels=False)
  trainer = Trainer(config, example=batch(rows, np.arange(1)))
  return predict_rows(trainer, restore_or_fail(config, trainer), rows)


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
