"""Data: EasyRec CSV or Parquet input, tfds input, feature transforms, the columnar cache,
synthetic data."""

import functools
import os

import numpy as np
import pyarrow as pa


def input_paths(config, log=print):
  """(train_input_path, eval_input_path); generates the synthetic data if both are unset.

  For a TFDSInput these are split names (validation requires train_input_path). The
  synthetic files live in <model_dir>/data and are written once: a rerun (or a
  resumed run) reads the same files back through the same CSV path as a user's data.
  """
  if config.train_input_path:
    return config.train_input_path, config.eval_input_path
  if config.eval_input_path:
    raise ValueError('eval_input_path is set but train_input_path is not')
  if ',' in config.model_dir:
    # The generated files' paths would be read as EasyRec's comma-separated lists.
    raise ValueError(f'model_dir {config.model_dir!r}: the synthetic data are written under '
                     "it and input paths are comma-separated lists, so it cannot hold ','")
  from mmoe_jax.data import synthetic
  train_rows = config.synthetic.train_rows
  if not train_rows:
    train_rows, why = synthetic_train_rows(config)
    log(f'synthetic.train_rows: {train_rows} rows ({why})')
  paths = []
  for split, rows in (('train', train_rows), ('eval', config.synthetic.eval_rows)):
    path = os.path.join(config.model_dir, 'data', f'synthetic_{split}_{rows}_{config.synthetic.seed}.csv')
    if not os.path.exists(path):
      log(f'writing {rows} synthetic taobao rows to {path}')
      synthetic.write_csv(path, rows, config.synthetic.seed, split)
    paths.append(path)
  return tuple(paths)


# The most synthetic rows an unset synthetic.train_rows asks for. Measured per million rows
# on 2 CPU cores: 4 s to write, 82 MB of CSV, 0.53 GB peak memory while writing; scaled to
# 5M rows, about 20 s, 0.4 GB of CSV (plus its columnar cache) and 2.7 GB of memory, which
# fits a small machine (2 cores, 24 GB), and one epoch of the default run (4,000 x 1,024).
SYNTHETIC_TRAIN_ROWS_CAP = 5_000_000
# Without num_steps (num_epochs decide the steps), the data decide the run's length: then
# the size EasyRec configs used to get, for num_epochs passes over it.
SYNTHETIC_TRAIN_ROWS_BY_EPOCHS = 200_000


def synthetic_train_rows(config):
  """The size of the synthetic train data when synthetic.train_rows is 0 (unset), and why.

  One epoch of the run (num_steps x batch_size), so that the run sees each row at most
  once (rather than memorizing a small set), capped at SYNTHETIC_TRAIN_ROWS_CAP.
  """
  steps, batch_size = config.train_config.num_steps, config.data_config.batch_size
  if steps <= 0:
    return SYNTHETIC_TRAIN_ROWS_BY_EPOCHS, (
        f'unset; num_steps is 0, so data_config.num_epochs={config.data_config.num_epochs} '
        'passes over this many rows decide the run')
  rows = steps * batch_size
  why = f'unset: one epoch of num_steps x batch_size = {steps} x {batch_size}'
  if rows > SYNTHETIC_TRAIN_ROWS_CAP:
    return SYNTHETIC_TRAIN_ROWS_CAP, f'{why} = {rows}, capped at {SYNTHETIC_TRAIN_ROWS_CAP}'
  return rows, why


def datasets(config, log=print):
  """(train, eval, oracle) for a validated config: ColumnarData, ColumnarData or None, and the
  eval rows' true label probabilities (synthetic taobao data) or None."""
  if not config.train_input_path and 'task_correlation' in config.synthetic:
    if file_sharded(config):
      raise ValueError('data_config.file_shard: synthetic.task_correlation data are made in '
                       'memory, not read from files, so there are no files to shard')
    return task_correlation_data(config) + (None,)
  train_path, eval_path = input_paths(config, log=log)
  train_path = process_share(train_path, config, 'train_input_path', log)
  train = load(train_path, config, log=log, field='train_input_path')
  if not eval_path:
    return train, None, None
  eval_path = process_share(eval_path, config, 'eval_input_path', log)
  eval_data = load(eval_path, config, log=log, field='eval_input_path', groups=True)
  # An oracle lines up with one whole file's rows, not a process's share of the files.
  return train, eval_data, None if file_sharded(config) else load_oracle(eval_path, config)


def file_sharded(config):
  """Whether each process reads only its share of the files (data_config.file_shard with
  several processes); with one process the share is every file, as without file_shard."""
  import jax
  return config.data_config.file_shard and jax.process_count() > 1


def shard_files(files, index, count):
  """Process `index` of `count`'s files: EasyRec's file_shard, round robin over the sorted
  list (file i goes to process i % count), so the split depends on the names alone."""
  return [files[i] for i in shard_positions(files, index, count)]


def shard_positions(files, index, count):
  """Where process `index` of `count`'s files (shard_files) sit in the list `files`, in the
  order the process reads them."""
  return sorted(range(len(files)), key=files.__getitem__)[index::count]


def process_share(paths, config, field, log=print):
  """`paths` (a config field's comma-separated files and globs), or under file_shard this
  process's share of them, logged; raises ValueError when a process would get no file."""
  if not config.data_config.file_shard:
    return paths
  import jax
  from mmoe_jax.data.csv_input import expand_paths
  index, count = jax.process_index(), jax.process_count()
  if count == 1:
    files = expand_paths(paths)
  else:
    files = shard_files(expand_paths(paths), index, count)
  if not files:
    raise ValueError(f'data_config.file_shard: {field} has {len(expand_paths(paths))} files, '
                     f'fewer than the {count} processes; process {index} would read none')
  log(f'file_shard: process {index} of {count} reads {len(files)} files of {field}: '
      + ', '.join(files))
  return paths if count == 1 else ','.join(files)


def first_rows_of_share(file_rows, paths, limit):
  """Under file_shard, which of this process's rows are among the first `limit` rows of the
  files `paths` in the order one process reads them (the order given, each glob sorted):
  indices into its rows, which are its files' (shard_files) with `file_rows` rows each.

  Each process knows only its own files' row counts; they are gathered from every process
  (a collective: every process calls this together).
  """
  import jax
  from jax.experimental import multihost_utils
  from mmoe_jax.data.csv_input import expand_paths
  files = expand_paths(paths)
  mine = shard_positions(files, jax.process_index(), jax.process_count())
  assert len(mine) == len(file_rows), (paths, file_rows)
  rows = np.zeros(len(files), np.int32)  # the files' row counts, each filled by its process
  rows[mine] = file_rows
  rows = multihost_utils.process_allgather(rows).astype(np.int64).sum(0)
  first = np.cumsum(rows) - rows  # each file's first row in the one-process order
  keep = np.clip(limit - first[mine], 0, file_rows)
  starts = np.cumsum(file_rows) - np.asarray(file_rows)  # where each file's rows start here
  return np.concatenate([start + np.arange(n) for start, n in zip(starts, keep)])


def task_correlation_data(config):
  """The synthetic.task_correlation data as (train, eval) ColumnarData, made in memory (fast,
  a pure function of the seed; a sweep makes one set per replica)."""
  from mmoe_jax.data import task_correlation
  from mmoe_jax.data.columnar import ColumnarData
  s = config.synthetic
  train_rows = s.train_rows or synthetic_train_rows(config)[0]
  x, labels = task_correlation.generate(train_rows + s.eval_rows, seed=s.seed,
                                        **s.task_correlation.to_dict())
  feature = next(f.feature_name for f in config.feature_configs)
  split = lambda rows: ColumnarData({feature: x[rows]}, {k: v[rows] for k, v in labels.items()},
                                    len(x[rows]), 0)
  return split(slice(0, train_rows)), split(slice(train_rows, None))


def load(paths, config, log=print, field='input path', check_labels=True, groups=False):
  """The columnar cache of `paths` (CSV or Parquet files, or a tfds split) for this config's
  features, built on first use, with the training signals the config reads (data/signals.py)
  and, with `groups` (eval rows), the group codes of gauc / session_auc (data/groups.py).

  The raw columns these read beside the cache are read in one pass over the files.
  Raises ValueError, before any training, when the input has no data rows (zero-byte
  files, a header only, every row skipped under ignore_error) naming `field` (the config
  field the paths came from) and the paths, and, with check_labels, when a CLASSIFICATION
  tower's label is outside its classes (label_errors), naming the file and line (a tfds
  split: the row).
  """
  from mmoe_jax.data import groups as groups_lib
  from mmoe_jax.data import signals
  data_config = config.data_config
  cache_dir = data_config.cache_dir or os.path.join(config.model_dir, 'cache')
  check = functools.partial(label_errors, config) if check_labels else None
  if data_config.input_type == 'TFDSInput':
    from mmoe_jax.data.tfds_input import load_tfds
    data = load_tfds(paths, data_config, config.feature_configs, cache_dir, log=log)
    found = check and check(data)
    if found:
      raise ValueError(f'{data_config.tfds.name} split {paths!r}, row {found[0]}: {found[1]}')
    signal_columns, group_columns = [], []  # validation refuses both for a tfds split
  else:
    if data_config.input_type == 'ParquetInput':
      from mmoe_jax.data.parquet_input import load_parquet as read
    else:
      from mmoe_jax.data.csv_input import load_csv as read
    data = read(paths, data_config, config.feature_configs, cache_dir, log=log, check=check)
    signal_columns = signals.columns(config)
    group_columns = groups_lib.group_fields(config) if groups else []
  raw = None
  if signal_columns:  # sample weights, masks, sessions; their row check precedes the next
    raw = raw_columns(paths, data_config, signal_columns
                      + [c for c in group_columns if c not in signal_columns])
    data = signals.attach(data, paths, config, raw, log=log)
  if not data.num_rows:
    skipped = (f'; all {data.skipped_rows} rows were malformed and skipped (ignore_error)'
               if data.skipped_rows else '')
    raise ValueError(f'{field}: {paths!r} has no data rows{skipped}')
  if group_columns:
    data = groups_lib.with_groups(data, paths, config,
                                  raw or raw_columns(paths, data_config, group_columns))
  return data


def raw_columns(paths, data_config, columns):
  """(files, {column: its raw cells over every file of `paths`, in row order}) of CSV or
  Parquet input: the input columns read beside the cache (data/signals.py, data/groups.py)."""
  if data_config.input_type == 'ParquetInput':
    from mmoe_jax.data.parquet_input import raw_columns as read
  else:
    from mmoe_jax.data.csv_input import raw_columns as read
  from mmoe_jax.data.csv_input import expand_paths
  files = expand_paths(paths)
  per_file = [read(path, data_config, columns) for path in files]
  return files, {c: pa.chunked_array([chunk for f in per_file for chunk in f[c].chunks],
                                     per_file[0][c].type) for c in columns}


def label_errors(config, data):
  """The first label outside its tower's classes, as (row, message), or None.

  A CLASSIFICATION tower with num_class 1 takes labels 0 and 1; with num_class K, the
  integers 0 .. K-1; a JRC_LOSS tower (num_class 2) 0 and 1. EasyRec checks neither: its
  sigmoid cross entropy takes any number (its AUC counts every non-zero label as positive),
  and its sparse softmax cross entropy fails on CPU and gives NaN on GPU for a class out of
  range. The labels of the other loss types are any number.
  """
  from mmoe_jax.config import task_towers  # config imports data (synthetic) lazily too
  for tower in task_towers(config.model_config):
    if tower.loss_type not in ('CLASSIFICATION', 'JRC_LOSS'):
      continue
    labels = np.asarray(data.labels[tower.label_name])
    classes = max(tower.num_class, 2)
    bad = (labels < 0) | (labels >= classes) | (labels != np.floor(labels))
    if bad.any():
      row = int(np.argmax(bad))
      allowed = ('0 or 1' if tower.num_class == 1 else
                 f'an integer in [0, {classes}) (num_class {classes})')
      return row, (f"label field '{tower.label_name}': {labels[row]:g} is not a class of "
                   f"tower '{tower.tower_name}', which takes {allowed}")
  return None


def load_oracle(path, config=None):
  """True label probabilities saved beside a CSV (`<csv>.oracle.npz`), or None.

  A tfds split (`config`'s input_type 'TFDSInput') has none.
  """
  if config is not None and config.data_config.input_type == 'TFDSInput':
    return None
  oracle = f'{path}.oracle.npz'
  if not os.path.exists(oracle):
    return None
  with np.load(oracle) as f:
    return dict(f)
