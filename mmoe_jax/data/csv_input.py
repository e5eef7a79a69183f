"""EasyRec CSV input -> columnar arrays, parsed and transformed once per (file, config).

Each file is read with pyarrow's streaming CSV reader (columns in data_config.input_fields
order, as in EasyRec's CSVInput), one block at a time; each block's columns are transformed by
`features` in parallel threads, and the arrays are cached (columnar.py) as one .npy each under
cache_dir/<sha1 of file identity + config>/. Later runs load the cache. Peak memory while
building is a few blocks' parsed columns and outputs, not the file's.
"""
import csv
import glob
import hashlib
import json
import os

import pyarrow as pa
import pyarrow.csv as pacsv

from mmoe_jax.data import columnar
from mmoe_jax.data.columnar import ColumnarData

# Part of the cache key: bump when the transforms change meaning, so old caches are rebuilt.
_CACHE_VERSION = 2  # 2: EasyRec missing-id rules, non-finite numbers are bad
# CSV bytes per parsed block: the file is read, transformed and saved block by block, so this
# trades per-call overhead against memory (a few blocks are in flight).
_BLOCK_BYTES = 16 << 20


def expand_paths(paths: str) -> list[str]:
  """EasyRec-style 'a.csv,dir/*.csv' -> files in the given order, each glob sorted."""
  files = []
  for pattern in (p.strip() for p in paths.split(',')):
    if not pattern:
      continue
    matched = [f for f in sorted(glob.glob(pattern)) if os.path.isfile(f)]
    if not matched:
      raise FileNotFoundError(f'no file matches input path {pattern!r}')
    files.extend(matched)
  if not files:
    raise FileNotFoundError(f'no input files in {paths!r}')
  return files


def _cache_key(path, data_config, feature_configs) -> str:
  st = os.stat(path)
  config = dict(
      input_fields=columnar.plain(data_config.input_fields), separator=data_config.separator,
      with_header=data_config.with_header, label_fields=columnar.plain(data_config.label_fields),
      ignore_error=data_config.ignore_error, feature_configs=columnar.plain(feature_configs))
  ident = [_CACHE_VERSION, os.path.abspath(path), st.st_size, st.st_mtime_ns, config]
  return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _data_lines(path, data_config):
  """Slow path for error messages: yields (1-based line number, line) of each data row,
  skipping the header and blank lines the way pyarrow does."""
  with open(path, newline='', encoding='utf-8', errors='replace') as f:
    for lineno, line in enumerate(f, 1):
      if (lineno == 1 and data_config.with_header) or not line.strip('\r\n'):
        continue
      yield lineno, line


def _first_bad_width_line(path, data_config):
  want = len(data_config.input_fields)
  for lineno, line in _data_lines(path, data_config):
    got = len(next(csv.reader([line.rstrip('\r\n')], delimiter=data_config.separator)))
    if got != want:
      return f'{path}:{lineno}: expected {want} columns, got {got}'
  return None


def _row_line(path, data_config, row):
  for i, (lineno, _) in enumerate(_data_lines(path, data_config)):
    if i == row:
      return lineno
  raise AssertionError(f'{path}: row {row} not found')


def _read_batches(path, data_config, columns):
  """pyarrow's streaming parse (used columns as raw bytes): yields (record batch, rows
  dropped for a bad column count), one parse block at a time, so memory holds a few blocks,
  not the file."""
  names = [f.input_name for f in data_config.input_fields]
  empty = pa.record_batch([pa.array([], pa.binary()) for _ in columns], names=columns)
  if os.path.getsize(path) == 0:  # pyarrow refuses an empty file; it is just zero rows
    yield empty, 0
    return
  dropped = []

  def on_invalid_row(row):
    # pyarrow gives no line number here (row.number is None with threads); the error path
    # rescans the file for it.
    dropped.append(row)
    return 'skip' if data_config.ignore_error else 'error'

  try:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names,
                                       skip_rows=1 if data_config.with_header else 0,
                                       block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(
            delimiter=data_config.separator, invalid_row_handler=on_invalid_row),
        # binary, not string: skips UTF-8 validation (~15% of the parse); features hash bytes.
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.binary() for c in columns}, include_columns=columns))
    got = False
    for record_batch in reader:
      got = True
      yield record_batch, len(dropped)
      dropped.clear()
    if not got:  # a header only
      yield empty, len(dropped)
  except pa.ArrowInvalid as e:
    raise ValueError(_first_bad_width_line(path, data_config) or f'{path}: {e}') from e


def raw_columns(path, data_config, columns):
  """The raw cells of input `columns` of one CSV file, as pa.binary() chunked arrays (one
  chunk per parse block), for the columns read beside the cache (sample weights, task-space
  masks, session and group ids). Rows dropped for a bad column count (ignore_error) are not
  in them."""
  batches = [batch for batch, _ in _read_batches(path, data_config, columns)]
  return {c: pa.chunked_array([b[c] for b in batches], pa.binary()) for c in columns}


def _chunks(path, data_config, feature_configs, log):
  """Parses and transforms one file batch by batch: yields (features, labels, skipped_rows)
  of each parse block. A bad value's error names the file and line."""
  _, columns = columnar.fields_and_columns(data_config, feature_configs)
  where = _where(path, data_config)
  skipped = rows = 0
  for batch, dropped in columnar.prefetch(_read_batches(path, data_config, columns)):
    feats, labels, bad = columnar.transform_batch(batch, data_config, feature_configs, where,
                                                  rows)
    rows += batch.num_rows
    skipped += bad + dropped
    yield feats, labels, bad + dropped
  if skipped:
    log(f'{path}: skipped {skipped} malformed rows (ignore_error)')


def load_file(path, data_config, feature_configs, cache_dir, log, check, chunks, where):
  """One file's arrays from its cache entry (CSV or Parquet), building the entry first from
  `chunks(path, data_config, feature_configs, log)` if missing; then `check` (see load_csv),
  on every load: what it checks may change without the cache key. `where(path, row)` names
  a data row in errors."""
  entry = os.path.join(cache_dir, _cache_key(path, data_config, feature_configs))
  data = columnar.load_or_build_chunks(
      entry, lambda: chunks(path, data_config, feature_configs, log), path, log)
  if not data.num_rows:
    log(f'{path}: no data rows')
  found = check(data) if check else None
  if found:
    row, message = found
    if data.skipped_rows:  # the kept rows no longer map to lines without a re-parse
      raise ValueError(f'{path}: data row {row + 1} of those kept after skipping '
                       f'{data.skipped_rows} malformed rows: {message}')
    raise ValueError(f'{where(path, row)}: {message}')
  return data


def _where(path, data_config):
  """'file:line' of a data row (0-based), for error messages."""
  return lambda row: f'{path}:{_row_line(path, data_config, row)}'


def load_csv(paths: str, data_config, feature_configs, cache_dir: str, log=print,
             check=None) -> ColumnarData:
  """Loads EasyRec CSV files as columnar arrays, through a per-file cache.

  Args:
    paths: comma-separated files and/or glob patterns (each glob sorted); rows keep file order.
    data_config: EasyRec DatasetConfig fields (input_fields, label_fields, separator,
      with_header, ignore_error).
    feature_configs: tuple of EasyRec FeatureConfig (IdFeature, TagFeature, RawFeature).
    cache_dir: where per-file caches live; created if missing.
    log: called with one line per file (cache hit / built / skipped rows / no rows).
    check: optional, called with each file's ColumnarData; returns None, or (row, message)
      for its first bad row, which becomes a ValueError naming the file and line.
  Returns:
    ColumnarData with features keyed by feature_name and labels by label field name.
  Raises:
    FileNotFoundError: a path pattern matches nothing.
    ValueError: an unknown column, (without ignore_error) a malformed row, or a row `check`
      refuses; the message names the file and 1-based line.
  """
  # Config errors before touching files.
  columnar.fields_and_columns(data_config, feature_configs)
  if len(data_config.separator) != 1:
    raise ValueError(f'data_config.separator must be one character, got '
                     f'{data_config.separator!r}')
  os.makedirs(cache_dir, exist_ok=True)
  where = lambda path, row: _where(path, data_config)(row)
  return columnar.load_files(
      lambda p: load_file(p, data_config, feature_configs, cache_dir, log, check, _chunks,
                          where), expand_paths(paths))
