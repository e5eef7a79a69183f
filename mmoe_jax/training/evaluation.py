"""Evaluation and prediction: EasyRec's outputs and metrics over every row of a file."""

import logging
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import data as data_lib
from mmoe_jax import metrics as metrics_lib
from mmoe_jax import serving
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import validate
from mmoe_jax.data import groups as groups_lib
from mmoe_jax.data.columnar import ColumnarData
from mmoe_jax.training import exporter, run_dir
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


def gather_predictions(trainer, state, columns):
  """(predictions, rows) over every process's rows, on every process, in process order:
  under file_shard each process holds the rows of its own files.

  Each process predicts its rows as its part of each global eval batch (eval_batch_size
  rows, rounded up to divide over the batch devices); a process with fewer batches of rows
  than another pads with its row 0 (with none, zeros), so that all run the same batches,
  and the padding is trimmed. `rows` holds the labels of all and their group codes, coded
  by raw value over all processes (groups.merged_codes).
  """
  counts = multihost_utils.process_allgather(np.int64(columns.num_rows))
  shards = sharding_lib.num_shards(trainer.mesh, trainer.config.sharding, 'batch')
  size = -(-trainer.config.data_config.eval_batch_size // shards) * shards
  span = sharding_lib.process_rows(trainer.batch_sharding, size)
  starts = multihost_utils.process_allgather(np.int64(span.start))
  local = span.stop - span.start
  chunks = []
  for first in range(0, int(counts.max()), local):
    rows = np.arange(first, first + local)
    rows[rows >= columns.num_rows] = 0
    features = sharding_lib.global_batch(_local_features(columns, rows),
                                         trainer.batch_sharding, size)
    chunks.append(jax.device_get(trainer.predict_batch(state['params'], state['batch_stats'],
                                                       features)))
  # Process q's rows of each batch are rows starts[q] .. + local of its predictions.
  predictions = {k: np.concatenate([np.concatenate([c[k][s:s + local] for c in chunks])[:n]
                                    for s, n in zip(starts, counts)])
                 for k in chunks[0]}
  labels = {name: np.concatenate(gather_ragged(values))
            for name, values in columns.labels.items()}
  groups = {field: groups_lib.merged_codes(gather_ragged(codes),
                                           gather_values(columns.group_values[field]))
            for field, codes in columns.groups.items()}
  skipped = multihost_utils.process_allgather(np.int64(columns.skipped_rows))
  return predictions, ColumnarData({}, labels, int(counts.sum()), int(skipped.sum()), groups)


def _local_features(columns, rows):
  """This process's features of rows `rows`; zeros when it holds no rows (file_shard's
  num_examples may end before its files), which are predicted and trimmed."""
  if columns.num_rows:
    return batch(columns, rows)['features']
  return {k: np.zeros((len(rows),) + v.shape[1:], v.dtype) for k, v in columns.features.items()}


def gather_ragged(local):
  """Every process's array `local` (their lengths may differ), in process order, on every
  process."""
  local = np.asarray(local)  # a Rows (several files' rows) too
  counts = multihost_utils.process_allgather(np.int64(len(local)))
  padded = np.zeros((max(int(counts.max()), 1),) + local.shape[1:], local.dtype)
  padded[:len(local)] = local
  every = multihost_utils.process_allgather(padded)
  return [every[q, :n] for q, n in enumerate(counts)]


def gather_values(values):
  """Every process's distinct values `values` (a pyarrow array of texts or bytes) as
  (lengths, bytes) (groups.value_bytes), in process order, on every process."""
  return list(zip(*map(gather_ragged, groups_lib.value_bytes(values))))


def predictions_of(trainer, state, columns, sharded=False):
  """(predictions, rows they are of): of `columns`, or with `sharded` (file_shard over
  several processes) of every process's columns (gather_predictions)."""
  if sharded:
    return gather_predictions(trainer, state, columns)
  return predict_rows(trainer, state, columns), columns


def evaluate(trainer, state, columns, oracle=None, sharded=False):
  """Metrics over the whole eval set (see tower_results); with `sharded`, over the rows of
  every process (file_shard), computed on all of them at once, as one process would."""
  predictions, columns = predictions_of(trainer, state, columns, sharded)
  return tower_results(trainer.towers, predictions, columns, oracle,
                       trainer.config.model_config.model_class)


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


def predict_checkpoint(config, input_path, use_given_config=False, checkpoint_path=None):
  """Predictions of the latest checkpoint (or the one at checkpoint_path, see
  checkpoint.locate) for every row of a CSV, in input order, with the config model_dir
  records unless `use_given_config` (run_dir.config_of_checkpoint).

  The CSV needs only the feature columns (serving.Inputs.read_csv: by name with a header,
  else input_fields in order with or without the labels).
  """
  return predict_checkpoint_table(config, input_path, use_given_config, (),
                                  checkpoint_path)[0]


def predict_checkpoint_table(config, input_path, use_given_config=False, keep=(),
                             checkpoint_path=None):
  """predict_checkpoint, and the table of the columns read: the features and `keep`."""
  config = run_dir.config_of_checkpoint(validate(config), use_given_config)
  if config.data_config.input_type == 'TFDSInput':
    raise ValueError("data_config.input_type: 'TFDSInput'; predict.py reads CSV files in "
                     "the config's columns (input_fields)")
  inputs = serving.Inputs(exporter.input_manifest(config))
  table = inputs.read_csv(input_path, keep)
  if not table.num_rows:
    raise ValueError(f'{input_path}: no data rows')
  rows = ColumnarData(inputs.transform(table, input_path), {}, table.num_rows, 0)
  trainer = Trainer(config, example=batch(rows, np.arange(1)))
  return predict_rows(trainer, restore_or_fail(config, trainer, checkpoint_path), rows), table


def write_predictions(predictions, path, reserved=None, output_cols=None):
  """Writes EasyRec's probs_/y_ outputs as CSV columns, logits_ left out, then the
  `reserved` columns (a pyarrow table, e.g. ids) as they were read.

  A [N, C] output gives one column per class, probs_<t>_<k>; EasyRec's probs_<t>_1 is the
  same column as class 1's, so it is written once. A multi-class tower also gets
  probs_<t>_y (the top probability) and y_<t> (the top class, an integer).
  output_cols: the columns to write, in that order (EasyRec's 'name type' items take the
  name), instead of every probs_/y_ column.
  """
  import pyarrow as pa
  import pyarrow.csv as pa_csv
  columns = {}
  for name, value in predictions.items():
    if value.ndim == 1:
      columns[name] = value
    else:
      columns.update({f'{name}_{k}': value[:, k] for k in range(value.shape[1])})
  if output_cols:
    names = [c.split()[0] for c in output_cols]
    unknown = [n for n in names if n not in columns]
    if unknown:
      raise ValueError(f'output_cols: no output {", ".join(map(repr, unknown))} (outputs: '
                       f'{", ".join(columns)})')
    columns = {n: columns[n] for n in names}
  else:
    columns = {k: v for k, v in columns.items() if not k.startswith('logits_')}
  for name in (reserved.column_names if reserved is not None else ()):
    columns[name] = reserved[name]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  pa_csv.write_csv(pa.table(columns), path)


def load_eval(path, config):
  """The eval rows of a file, limited as limit_eval says, with the group codes of the fields
  gauc / session_auc group by."""
  return limit_eval(data_lib.load(path, config, log=log.info, groups=True), config)


def limit_eval(columns, config, sharded=False):
  """The eval rows: all of them, or the first eval_config.num_examples as EasyRec counts
  them: ceil(num_examples / data_config.batch_size) whole batches of batch_size rows (its
  eval steps; its eval input batches by batch_size, not eval_batch_size), so up to a batch
  more than num_examples, and every row when the files end first.

  With `sharded` (file_shard over several processes; a collective), this process's part of
  the rows one process would take: the first rows of eval_input_path's files in the order
  given (data.first_rows_of_share), not of its own files.
  """
  limit = config.eval_config.num_examples
  if limit <= 0:
    return columns
  batch_size = config.data_config.batch_size
  limit = -(-limit // batch_size) * batch_size
  if sharded:
    keep = data_lib.first_rows_of_share(columns.file_rows, config.eval_input_path, limit)
    return columns if len(keep) == columns.num_rows else columns.take(keep)
  return columns.take(np.arange(limit)) if limit < columns.num_rows else columns


def eval_chunks(num_rows, eval_batch_size):
  """Row indices of the eval batches: eval_batch_size rows each, the last one padded with
  row 0 (callers trim it), so that every call has the same shape and compiles once."""
  size = min(eval_batch_size, num_rows)
  for start in range(0, num_rows, size):
    rows = np.arange(start, start + size)
    rows[rows >= num_rows] = 0
    yield rows


def tower_results(towers, predictions, columns, oracle=None, model_class='MMoE'):
  """Each tower's metrics: its metrics_set (metrics.tower_metrics; gauc / session_auc read
  columns.groups), logloss / normalized_entropy / calibration of a binary tower
  (metrics.probability_metrics), and oracle_auc_<tower> where the true probabilities are
  known. ESMM's are its own (esmm_results).

  `oracle` holds the true probability of every row of the eval file, by label name; it
  lines up with `columns` unless malformed rows were skipped.
  """
  if oracle is not None and columns.skipped_rows:
    log.warning('not reporting oracle_auc: %d malformed eval rows were skipped',
                columns.skipped_rows)
    oracle = None
  if model_class == 'ESMM':
    return esmm_results(*towers, predictions, columns, oracle)
  result = {}
  for tower in towers:
    result.update(metrics_lib.tower_metrics(tower, predictions, columns.labels, columns.groups))
    result.update(metrics_lib.probability_metrics(tower, predictions, columns.labels))
    if oracle is not None and tower.label_name in oracle:
      result[f'oracle_auc_{tower.tower_name}'] = metrics_lib.auc(
          columns.labels[tower.label_name], oracle[tower.label_name][:columns.num_rows])
  return result


def esmm_results(cvr, ctr, predictions, columns, oracle=None):
  """ESMM's metrics (metrics.esmm_metrics) with the probability metrics of each of its
  targets, and the oracle AUCs of the same targets where the data knows P(cvr label | ctr
  label), keyed '<cvr label>|<ctr label>' (the embedded data does): oracle_auc_ctcvr on every row, oracle_auc_<cvr>_masked on the clicked rows,
  oracle_auc_<ctr>."""
  labels = columns.labels
  result = {}
  for view in metrics_lib.esmm_views(cvr, ctr, predictions, labels, columns.groups):
    result.update(metrics_lib.tower_metrics(*view))
    result.update(metrics_lib.probability_metrics(*view[:3]))
  given = f'{cvr.label_name}|{ctr.label_name}'
  if oracle is None or ctr.label_name not in oracle:
    return result
  n = columns.num_rows
  p_ctr = oracle[ctr.label_name][:n]
  y_ctr, y_cvr = np.asarray(labels[ctr.label_name]), np.asarray(labels[cvr.label_name])
  result[f'oracle_auc_{ctr.tower_name}'] = metrics_lib.auc(y_ctr, p_ctr)
  if given in oracle:
    p_cvr = oracle[given][:n]
    clicked = y_ctr > 0
    result['oracle_auc_ctcvr'] = metrics_lib.auc(y_cvr * y_ctr, p_cvr * p_ctr)
    result[f'oracle_auc_{cvr.tower_name}_masked'] = metrics_lib.auc(y_cvr[clicked],
                                                                    p_cvr[clicked])
  return result


def recent_train_auc(trainer, state, train_data, sampler, step, rows, sharded=False):
  """auc_<t> of each binary tower (ESMM: auc_ctcvr, auc_<cvr>_masked, auc_<ctr>) on the last
  `rows` rows trained on before `step` (the latest batches of `sampler`, which must not be
  the input pipeline's own), predicted with the current parameters.

  The training loop's moving metric: one forward pass of `rows` rows per log line, on the
  host's copy of the data, so the step itself never waits on it (`sharded`: each process's
  own rows of those batches, from its files, the AUC over all). Rows the model just fitted
  score a little higher than unseen ones: compare it with the eval AUC for overfitting.
  """
  batches = min(step, -(-rows // sampler.batch_size))
  idx = sampler.indices(step - batches, batches).reshape(-1)[-rows:]
  predictions, columns = predictions_of(trainer, state, train_data.take(idx), sharded)
  towers = trainer.towers
  if trainer.config.model_config.model_class == 'ESMM':
    views = [v[:3] for v in metrics_lib.esmm_views(*towers, predictions, columns.labels)]
  else:
    views = [(t, predictions, columns.labels) for t in towers]
  return {f'auc_{t.tower_name}': metrics_lib.auc(labels[t.label_name],
                                                  metrics_lib.binary_score(t, preds))
          for t, preds, labels in views
          if t.loss_type == 'CLASSIFICATION' and t.num_class <= 2}
