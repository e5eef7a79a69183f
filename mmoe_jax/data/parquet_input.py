"""EasyRec's ParquetInput: Parquet files -> the same columnar cache as a CSV file.

The columns named by data_config.input_fields are read by name (other columns are never
read), one record batch at a time, and go through the same feature transforms as CSV cells:
each value is taken as its text ('' for a null, as an empty CSV cell), so the same rows give
the same cache as a CSV file, and the same errors, naming the file and 1-based data row. A
typed column is not cast value by value: its distinct values are, and the transforms run on
them once each (_as_text).
"""
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmoe_jax.data import columnar, csv_input
from mmoe_jax.data.columnar import ColumnarData

# Rows per record batch read: memory holds a few batches of the used columns, not the file.
_BATCH_ROWS = 256 * 1024


def _where(path, row):
  return f'{path}: row {row + 1}'


def _as_text(column, path, name):
  """A Parquet column as text, each scalar its text and a null '': a pa.DictionaryArray of
  the text of the values the batch uses, which the transforms take once per distinct value
  (features._distinct). A string column comes with Parquet's own dictionary (read_dictionary)
  and only its indices are encoded again, to drop the entries other batches use: a third of
  the CPU of decoding the strings and encoding them again. Any other type (ints, floats, ...)
  is encoded (an int64 column in 1.6 ms per 256k rows, 0.4x casting every value to text) and
  only its distinct values are cast to text."""
  value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
  if pa.types.is_nested(value_type):
    raise ValueError(f'{path}: column {name!r} is {column.type}; ParquetInput reads scalar '
                     "columns (a TagFeature's tags as one string, joined by its separator)")
  if pa.types.is_dictionary(column.type):
    encoded = pc.dictionary_encode(column.indices, null_encoding='encode')
    values = column.dictionary.take(encoded.dictionary)
  elif pa.types.is_string(column.type):
    return column.fill_null('')
  else:
    encoded = pc.dictionary_encode(column, null_encoding='encode')
    values = encoded.dictionary
  text = values.cast(pa.string()).fill_null('')
  # safe=False: the indices come from dictionary_encode; checking their bounds cost 3% of a build.
  return pa.DictionaryArray.from_arrays(encoded.indices, text, safe=False)


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
  rows = skipped = 0
  got = False
  batches = reader.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=True)
  for batch in columnar.prefetch(batches):
    got = True
    text = pa.record_batch([_as_text(batch[c], path, c) for c in columns], names=columns)
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
  return columnar.concat([
      csv_input.load_file(p, data_config, feature_configs, cache_dir, log, check, _chunks,
                          _where) for p in csv_input.expand_paths(paths)])
