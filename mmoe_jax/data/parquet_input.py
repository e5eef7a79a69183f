"""EasyRec's ParquetInput: Parquet files -> the same columnar cache as a CSV file.

The columns named by data_config.input_fields are read by name (other columns are never
read), one record batch at a time, and go through the same feature transforms as CSV cells:
each value is taken as its text ('' for a null, as an empty CSV cell), so the same rows give
the same cache as a CSV file, and the same errors, naming the file and 1-based data row. A
typed column is not cast value by value: its distinct values are, and the transforms run on
them once each (_as_text).
"""
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmoe_jax.data import columnar, csv_input
from mmoe_jax.data.columnar import ColumnarData

# Rows per record batch read: memory holds a few batches of the used columns, not the file.
_BATCH_ROWS = 256 * 1024


def _where(path, row):
  return f'{path}: row {row + 1}'


def _as_text(column, path, name, dense=True):
  """A Parquet column as text, each scalar its text and a null '': a pa.DictionaryArray of
  the text of the values the batch uses, which the transforms take once per distinct value
  (features._distinct). A string column comes with Parquet's own dictionary (read_dictionary)
  and only its indices are encoded again, to drop the entries other batches use: a third of
  the CPU of decoding the strings and encoding them again. Any other type (ints, floats, ...)
  is encoded (an int64 column in 1.6 ms per 256k rows, 0.4x casting every value to text) and
  only its distinct values are cast to text; an integer column of a dense range without
  hashing (_dense_range), where `dense` allows: not for a column a TagFeature reads, whose
  width L is the most tokens of any dictionary value, used or not."""
  value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
  if pa.types.is_nested(value_type):
    raise ValueError(f'{path}: column {name!r} is {column.type}; ParquetInput reads scalar '
                     "columns (a TagFeature's tags as one string, joined by its separator)")
  if pa.types.is_dictionary(column.type):
    encoded = pc.dictionary_encode(column.indices, null_encoding='encode')
    indices, values = encoded.indices, column.dictionary.take(encoded.dictionary)
  elif pa.types.is_string(column.type):
    return column.fill_null('')
  elif dense and (in_range := _dense_range(column)) is not None:
    indices, values = in_range
  else:
    encoded = pc.dictionary_encode(column, null_encoding='encode')
    indices, values = encoded.indices, encoded.dictionary
  text = values.cast(pa.string()).fill_null('')
  # safe=False: the indices come from dictionary_encode or _dense_range; checking their
  # bounds cost 3% of a build.
  return pa.DictionaryArray.from_arrays(indices, text, safe=False)


def _dense_range(column):
  """(indices, values) of an integer column without nulls whose values span a range no
  longer than the column, found without hashing (dictionary_encode): values is every integer
  of the range, a value's index its offset in it; with no negative values the range starts
  at 0 and the column is its own indices, uncopied. The transforms then also see values no
  row holds, which changes nothing, every transform being row-wise and its results gathered
  by the indices, but a TagFeature's width (see _as_text's `dense`). None for other
  columns."""
  if not pa.types.is_integer(column.type) or column.null_count or not len(column):
    return None
  low, high = (s.as_py() for s in pc.min_max(column).values())
  if 0 <= low and high < len(column) and pa.types.is_signed_integer(column.type):
    return column, pa.array(np.arange(high + 1, dtype=column.type.to_pandas_dtype()))
  if high - low >= len(column):
    return None
  # In int64 (uint64 in its own type, where v >= low): int8's 127 - -128 overflows int8.
  v = column.to_numpy()
  offsets = v - np.uint64(low) if v.dtype == np.uint64 else v.astype(np.int64) - low
  return (pa.array(offsets.astype(np.int64, copy=False)),
          pa.array(np.arange(low, high + 1, dtype=v.dtype)))


def _chunks(path, data_config, feature_configs, log):
  """Reads and transforms one file record batch by record batch: yields (features, labels,
  skipped_rows) of each batch."""
  _, columns = columnar.fields_and_columns(data_config, feature_configs)
  try:
    schema = pq.read_schema(path)
  except (pa.ArrowInvalid, OSError) as e:
    raise ValueError(f'{path}: not a Parquet file ({e})') from e
  missing = [c for c in columns if c not in schema.names]
  if missing:
    raise ValueError(f'{path}: no column {missing[0]!r} (data_config.input_fields); the file '
                     f'has {schema.names}')
  # Parquet's dictionary of the string columns, as it is (_as_text); other types ignore it.
  reader = pq.ParquetFile(path, read_dictionary=[
      c for c in columns if not pa.types.is_nested(schema.field(c).type)])
  tags = {fc.input_names[0] for fc in feature_configs if fc.feature_type == 'TagFeature'}
  rows = skipped = 0
  got = False
  batches = reader.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=True)
  for batch in columnar.prefetch(batches):
    got = True
    text = pa.record_batch([_as_text(batch[c], path, c, dense=c not in tags) for c in columns],
                           names=columns)
    feats, labels, bad = columnar.transform_batch(
        text, data_config, feature_configs, lambda row: _where(path, row), rows)
    rows += batch.num_rows
    skipped += bad
    yield feats, labels, bad
  if skipped:
    log(f'{path}: skipped {skipped} malformed rows (ignore_error)')
  if not got:  # no row groups
    empty = pa.record_batch([pa.array([], pa.string()) for _ in columns], names=columns)
    yield columnar.transform_batch(empty, data_config, feature_configs, None)


def raw_columns(path, data_config, columns):
  """The cells of input `columns` of one Parquet file as their text (pa.string(), nulls
  ''), as the cache reads them (csv_input.raw_columns' twin for Parquet)."""
  del data_config  # columns are read by name
  table = pq.read_table(path, columns=columns)
  return {c: pa.chunked_array([_as_text(chunk, path, c).cast(pa.string())
                               for chunk in table[c].chunks], pa.string()) for c in columns}


def load_parquet(paths: str, data_config, feature_configs, cache_dir: str, log=print,
                 check=None) -> ColumnarData:
  """Loads Parquet files as columnar arrays through the per-file cache; the arguments,
  result and errors are load_csv's (csv_input.py), rows named as 'file: row N'."""
  columnar.fields_and_columns(data_config, feature_configs)
  os.makedirs(cache_dir, exist_ok=True)
  return columnar.load_files(
      lambda p: csv_input.load_file(p, data_config, feature_configs, cache_dir, log, check,
                                    _chunks, _where), csv_input.expand_paths(paths))
