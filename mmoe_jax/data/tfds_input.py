"""A tensorflow_datasets split as input: prepared once, then transformed into the columnar cache.

Not EasyRec: `data_config.input_type: 'TFDSInput'`, with `data_config.tfds` naming the
dataset (its builder, data_dir and manual_dir) and train_input_path / eval_input_path
naming splits ('train', 'validation', 'test', or any tfds split string). The dataset is
prepared on first use (array_record, no TensorFlow). The used columns of a split are read
through `as_data_source` in blocks of rows (never one record at a time: array_record reads
single records at about 10 ms each here) and go through the same feature transforms and
the same .npy cache as a CSV file (columnar.py).
"""
import glob
import hashlib
import json
import os
import time

import numpy as np
import pyarrow as pa

from mmoe_jax.data import columnar
from mmoe_jax.data.columnar import ColumnarData

_CACHE_VERSION = 2  # 2: EasyRec missing-id rules, non-finite numbers are bad
_READ_BLOCK = 4096  # rows per __getitems__ call


def builder(tfds_config, cache_dir, log=print):
  """The prepared tfds builder of `data_config.tfds` (preparing it on first use).

  data_dir '' = <cache_dir>/tfds/<hash of manual_dir's files>. Raises ValueError /
  FileNotFoundError naming the config field at fault: an unknown dataset name, or a dataset
  to prepare without its manual files.
  """
  import tensorflow_datasets as tfds

  from mmoe_jax.data import census  # noqa: F401  (registers census_income_kdd)
  data_dir = tfds_config.data_dir or os.path.join(cache_dir, 'tfds', _files_key(
      tfds_config.manual_dir))
  try:
    ds = tfds.builder(tfds_config.name, data_dir=data_dir, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f'data_config.tfds.name: {tfds_config.name!r}: {e}') from None
  if ds.is_prepared():
    if ds.info.metadata:  # e.g. census: how its files were split
      log(f'{ds.info.full_name} in {data_dir}: {dict(ds.info.metadata)}')
    return ds
  manual_dir = tfds_config.manual_dir
  if ds.MANUAL_DOWNLOAD_INSTRUCTIONS and not manual_dir:
    raise FileNotFoundError(
        f'data_config.tfds.manual_dir: unset, and {tfds_config.name} is not prepared in '
        f'{data_dir}; it is built from files you download:\n'
        + ds.MANUAL_DOWNLOAD_INSTRUCTIONS.strip())
  if manual_dir and not os.path.isdir(manual_dir):
    raise FileNotFoundError(f'data_config.tfds.manual_dir: {manual_dir!r} is not a directory')
  start = time.time()
  log(f'preparing tfds dataset {tfds_config.name} in {data_dir} from {manual_dir or "downloads"}')
  try:
    ds.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir or None))
  except FileNotFoundError as e:
    raise FileNotFoundError(f'data_config.tfds.manual_dir ({manual_dir}): {e}') from e
  log(f'prepared {ds.info.full_name} in {time.time() - start:.1f}s: '
      + ', '.join(f'{k} {v.num_examples} rows' for k, v in ds.info.splits.items()))
  return ds


def _files_key(directory):
  """A short hash of a directory's path and files (name, size, mtime); 'none' for none.

  The default data_dir is keyed by it, so adding census-income.data to the manual
  directory prepares the dataset again (with the paper's split) instead of reusing the
  build made without it.
  """
  if not directory or not os.path.isdir(directory):
    return 'none'
  files = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory)
                 if e.is_file())
  ident = json.dumps([os.path.abspath(directory), files])
  return hashlib.sha1(ident.encode()).hexdigest()[:12]


def _cache_key(ds, split, data_config, feature_configs):
  files = sorted(glob.glob(os.path.join(os.fspath(ds.data_path), '*')))
  stats = [(os.path.basename(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
  config = dict(input_fields=columnar.plain(data_config.input_fields),
                label_fields=columnar.plain(data_config.label_fields),
                feature_configs=columnar.plain(feature_configs))
  ident = [_CACHE_VERSION, 'tfds', ds.info.full_name, os.path.abspath(ds.data_path), split,
           stats, config]
  return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _read_columns(ds, split, columns):
  """The columns of every row of a split, as a pyarrow table (text stays bytes).

  tfds stores rows as tf.Example protos. Its own decoding (about 1k rows/s here for
  census's 45 columns) is skipped: the records are read as raw bytes, a block at a time,
  and only the used columns are taken from the parsed protos (about 7x faster).
  """
  import tensorflow_datasets as tfds
  from tensorflow_datasets.proto import tf_example_pb2
  kinds = {}
  for c in columns:
    feature = ds.info.features[c]
    if feature.shape != () or not isinstance(feature.np_dtype, (np.dtype, type)):
      raise ValueError(f'data_config.input_fields: tfds feature {c!r} of '
                       f'{ds.info.full_name} is not a scalar; TFDSInput reads scalars only')
    kind = np.dtype(feature.np_dtype).kind
    kinds[c] = ('int64_list' if kind in 'iub' else 'float_list' if kind == 'f'
                else 'bytes_list')
  source = ds.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  values = {c: [] for c in columns}
  for start in range(0, len(source), _READ_BLOCK):
    block = source.__getitems__(list(range(start, min(len(source), start + _READ_BLOCK))))
    rows = [tf_example_pb2.Example.FromString(record).features.feature for record in block]
    for c, kind in kinds.items():
      values[c].extend(getattr(row[c], kind).value[0] for row in rows)
  return pa.table({c: pa.array(v, pa.binary() if kinds[c] == 'bytes_list' else None)
                   for c, v in values.items()})


def _build(ds, split, data_config, feature_configs):
  _, columns = columnar.fields_and_columns(data_config, feature_configs)
  table = _read_columns(ds, split, columns)
  feats, labels, bad_jobs = columnar.transform_table(table, data_config, feature_configs)
  if bad_jobs:
    mask, job = bad_jobs[0]
    row = int(np.argmax(mask))
    raise ValueError(f'{ds.info.full_name} split {split!r}, row {row}: column {job.column!r} '
                     f'({job.desc}): {table[job.column][row].as_py()!r} is not {job.expected}')
  return feats, labels, table.num_rows, 0


def load_tfds(split: str, data_config, feature_configs, cache_dir: str,
              log=print) -> ColumnarData:
  """One split of data_config.tfds as columnar arrays, through the cache.

  Args:
    split: a split of the dataset, e.g. 'train' (tfds split syntax, e.g. 'train[:10%]').
    data_config: EasyRec DatasetConfig fields (input_fields: the dataset features the
      config reads, label_fields) and `tfds` (name, data_dir, manual_dir).
    feature_configs: tuple of EasyRec FeatureConfig, as for CSV input.
    cache_dir: where the cache (and, with tfds.data_dir unset, the prepared dataset) live.
    log: called with one line per prepare / cache build / cache hit.
  """
  # Config errors before preparing anything.
  _, columns = columnar.fields_and_columns(data_config, feature_configs)
  os.makedirs(cache_dir, exist_ok=True)
  ds = builder(data_config.tfds, cache_dir, log)
  missing = [c for c in columns if c not in ds.info.features]
  if missing:
    raise ValueError(f'data_config.input_fields: {missing} are not features of tfds dataset '
                     f'{data_config.tfds.name}; it has {sorted(ds.info.features)}')
  if any(part.split('[')[0].strip() not in ds.info.splits for part in split.split('+')):
    raise ValueError(f'train_input_path / eval_input_path: {split!r} is not a split of '
                     f'{data_config.tfds.name}; its splits: {sorted(ds.info.splits)}')
  entry = os.path.join(cache_dir, _cache_key(ds, split, data_config, feature_configs))
  return columnar.load_or_build(
      entry, lambda: _build(ds, split, data_config, feature_configs),
      f'{ds.info.full_name}:{split}', log)
