"""EasyRec CSV input -> columnar arrays, parsed and transformed once per (file, config).

Each file is read with pyarrow.csv (columns in data_config.input_fields order, as in EasyRec's
CSVInput), its columns are transformed by `features` in parallel threads, and the arrays are
cached as one .npy each under cache_dir/<sha1 of file identity + config>/. Later runs load the
cache. Peak memory while building is about the file's parsed columns plus its output arrays.
"""
import concurrent.futures
import csv
import dataclasses
import functools
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mmoe_jax.data import features

# Part of the cache key: bump when the transforms change meaning, so old caches are rebuilt.
_CACHE_VERSION = 1
# CSV bytes per parsed block: the features are transformed block by block (see
# features._per_chunk), so this trades per-call overhead against temporary memory.
_BLOCK_BYTES = 16 << 20


@dataclasses.dataclass
class ColumnarData:
  """Rows of one or more CSV files as arrays (read-only memory maps of the cache for one file)."""
  features: dict[str, np.ndarray]  # keyed by feature_name; [N] or [N, L] (TagFeature)
  labels: dict[str, np.ndarray]  # keyed by label field name; float32 [N]
  num_rows: int
  skipped_rows: int  # malformed rows skipped under ignore_error

  def take(self, idx: np.ndarray) -> 'ColumnarData':
    """Rows `idx` (in that order), e.g. one batch; skipped_rows is kept from the source."""
    return ColumnarData(
        features={k: np.asarray(v[idx]) for k, v in self.features.items()},
        labels={k: np.asarray(v[idx]) for k, v in self.labels.items()},
        num_rows=len(idx), skipped_rows=self.skipped_rows)


def _expand_paths(paths: str) -> list[str]:
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


def _plain(x):
  """ConfigDict / tuple tree -> JSON-able plain values, for a canonical cache key."""
  if hasattr(x, 'items'):
    return {k: _plain(v) for k, v in sorted(x.items())}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


def _cache_key(path, data_config, feature_configs) -> str:
  st = os.stat(path)
  config = dict(
      input_fields=_plain(data_config.input_fields), separator=data_config.separator,
      with_header=data_config.with_header, label_fields=_plain(data_config.label_fields),
      ignore_error=data_config.ignore_error, feature_configs=_plain(feature_configs))
  ident = [_CACHE_VERSION, os.path.abspath(path), st.st_size, st.st_mtime_ns, config]
  return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _fields_and_columns(data_config, feature_configs):
  """input_name -> field config, and the columns any feature or label reads (file order)."""
  fields = {f.input_name: f for f in data_config.input_fields}
  used = set(data_config.label_fields)
  for name in data_config.label_fields:
    if name not in fields:
      raise ValueError(f"label field '{name}' is not in data_config.input_fields")
  names = [fc.feature_name for fc in feature_configs]
  if len(set(names)) != len(names) or '' in names:
    # Outputs are keyed by feature_name (the config validator fills it in).
    raise ValueError(f'feature_name must be set and unique, got {names}')
  for fc in feature_configs:
    for name in fc.input_names:
      if name not in fields:
        raise ValueError(f"feature '{fc.feature_name}': input column '{name}' is not in "
                         f'data_config.input_fields')
    if len(fc.input_names) != 1:
      # EasyRec uses a second input only for tag weights / combos, which we do not support.
      raise ValueError(f"feature '{fc.feature_name}': expected one input_name, got "
                       f'{list(fc.input_names)}')
    used.update(fc.input_names)
  return fields, [name for name in fields if name in used]


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


def _read_table(path, data_config, columns):
  """pyarrow parse (used columns as raw bytes): (table, rows dropped for a bad column count)."""
  names = [f.input_name for f in data_config.input_fields]
  if os.path.getsize(path) == 0:  # pyarrow refuses an empty file; it is just zero rows
    return pa.table({c: pa.array([], pa.binary()) for c in columns}), 0
  dropped = []

  def on_invalid_row(row):
    # pyarrow gives no line number here (row.number is None with threads); the error path
    # rescans the file for it.
    dropped.append(row)
    return 'skip' if data_config.ignore_error else 'error'

  try:
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names,
                                       skip_rows=1 if data_config.with_header else 0,
                                       block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(
            delimiter=data_config.separator, invalid_row_handler=on_invalid_row),
        # binary, not string: skips UTF-8 validation (~15% of the parse); features hash bytes.
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.binary() for c in columns}, include_columns=columns))
  except pa.ArrowInvalid as e:
    raise ValueError(_first_bad_width_line(path, data_config) or f'{path}: {e}') from e
  return table, len(dropped)


def _parallel(fn, items) -> list:
  """[fn(x) for x in items] on all cores: pyarrow compute, numpy and file writes release the GIL."""
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    return list(pool.map(fn, items))


class _Job(NamedTuple):
  """One output array of a file."""
  is_label: bool
  key: str  # feature_name or label name
  column: str  # input column it reads
  transform: Callable[[], tuple[np.ndarray, np.ndarray | None]]  # -> (values, bad rows)
  desc: str  # the column, for error messages
  expected: str  # what every value of the column must be, for error messages


def _build(path, data_config, feature_configs, log):
  """Parses and transforms one file: (features, labels, num_rows, skipped_rows)."""
  fields, columns = _fields_and_columns(data_config, feature_configs)
  table, skipped = _read_table(path, data_config, columns)

  jobs = []
  for fc in feature_configs:
    name = fc.input_names[0]
    field = fields[name]
    raw = fc.feature_type == 'RawFeature'
    jobs.append(_Job(False, fc.feature_name, name,
                     functools.partial(features.transform_feature, table[name], fc, field),
                     field.input_type + ('' if raw else f", feature '{fc.feature_name}'"),
                     'a number' if raw and field.input_type not in features.INT_TYPES
                     else 'an integer'))
  for name in data_config.label_fields:
    field = fields[name]
    jobs.append(_Job(True, name, name,
                     functools.partial(features.transform_label, table[name], field),
                     field.input_type,
                     'an integer' if field.input_type in features.INT_TYPES else 'a number'))
  results = _parallel(lambda job: job.transform(), jobs)

  feats, labels, bad_jobs = {}, {}, []
  for job, (values, bad) in zip(jobs, results):
    (labels if job.is_label else feats)[job.key] = values
    if bad is not None:
      bad_jobs.append((bad, job))
  num_rows = table.num_rows
  if bad_jobs:
    bad = np.logical_or.reduce([mask for mask, _ in bad_jobs])
    if not data_config.ignore_error:
      row = int(np.argmax(bad))
      job = next(job for mask, job in bad_jobs if mask[row])
      value = table[job.column][row].as_py().decode(errors='replace')
      raise ValueError(f'{path}:{_row_line(path, data_config, row)}: column {job.column!r} '
                       f'({job.desc}): {value!r} is not {job.expected}')
    keep = ~bad
    num_rows -= int(bad.sum())
    skipped += int(bad.sum())
    feats = {k: v[keep] for k, v in feats.items()}
    labels = {k: v[keep] for k, v in labels.items()}
    # Dropping rows may have dropped the longest tag list; keep L = max token count (>= 1).
    for k, v in feats.items():
      if v.ndim == 2 and v.dtype.kind == 'i':
        feats[k] = v[:, :max(1, int((v >= 0).sum(1).max(initial=0)))]
  if skipped:
    log(f'{path}: skipped {skipped} malformed rows (ignore_error)')
  return feats, labels, num_rows, skipped


def _load_file(path, data_config, feature_configs, cache_dir, log):
  """One file's arrays from its cache entry, building the entry first if missing."""
  entry = os.path.join(cache_dir, _cache_key(path, data_config, feature_configs))
  if os.path.exists(os.path.join(entry, 'meta.json')):
    log(f'{path}: cache hit {entry}')
  else:
    start = time.time()
    feats, labels, num_rows, skipped = _build(path, data_config, feature_configs, log)
    # Write into a temp dir and rename it into place, so an interrupted build never leaves a
    # half-written entry that a later run would take for a cache hit.
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=cache_dir)
    try:
      meta = dict(num_rows=num_rows, skipped_rows=skipped, source=os.path.abspath(path),
                  features=list(feats), labels=list(labels))
      files = [(f'feature{i}.npy', v) for i, v in enumerate(feats.values())]
      files += [(f'label{i}.npy', v) for i, v in enumerate(labels.values())]
      _parallel(lambda f: np.save(os.path.join(tmp, f[0]), f[1]), files)
      with open(os.path.join(tmp, 'meta.json'), 'w') as f:
        json.dump(meta, f)
      try:
        os.replace(tmp, entry)
      except OSError:
        if not os.path.exists(os.path.join(entry, 'meta.json')):
          raise
        # Another process built the same entry meanwhile; its content is identical.
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    log(f'{path}: built cache {entry} ({num_rows} rows, {time.time() - start:.1f}s)')

  with open(os.path.join(entry, 'meta.json')) as f:
    meta = json.load(f)
  # mmap: loading costs nothing up front, the OS page cache holds one copy shared by every
  # process reading this cache (sweeps, eval), and take() copies only the rows a batch needs.
  # numpy cannot mmap a zero-byte array, so empty files load normally.
  mode = 'r' if meta['num_rows'] else None
  load = lambda name: np.load(os.path.join(entry, name), mmap_mode=mode)
  feats = {k: load(f'feature{i}.npy') for i, k in enumerate(meta['features'])}
  labels = {k: load(f'label{i}.npy') for i, k in enumerate(meta['labels'])}
  return ColumnarData(feats, labels, meta['num_rows'], meta['skipped_rows'])


def _pad_tags(v: np.ndarray, width: int) -> np.ndarray:
  return np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=-1)


def _concat(parts: list[ColumnarData]) -> ColumnarData:
  """Rows of all parts in order; tag arrays padded with -1 to the widest file's L."""
  if len(parts) == 1:
    return parts[0]
  feats = {}
  for k in parts[0].features:
    arrays = [p.features[k] for p in parts]
    if arrays[0].ndim == 2 and arrays[0].dtype.kind == 'i':
      width = max(a.shape[1] for a in arrays)
      arrays = [_pad_tags(a, width) for a in arrays]
    feats[k] = np.concatenate(arrays)
  labels = {k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels}
  return ColumnarData(feats, labels, sum(p.num_rows for p in parts),
                      sum(p.skipped_rows for p in parts))


def load_csv(paths: str, data_config, feature_configs, cache_dir: str, log=print) -> ColumnarData:
  """Loads EasyRec CSV files as columnar arrays, through a per-file cache.

  Args:
    paths: comma-separated files and/or glob patterns (each glob sorted); rows keep file order.
    data_config: EasyRec DatasetConfig fields (input_fields, label_fields, separator,
      with_header, ignore_error).
    feature_configs: tuple of EasyRec FeatureConfig (IdFeature, TagFeature, RawFeature).
    cache_dir: where per-file caches live; created if missing.
    log: called with one line per file (cache hit / built / skipped rows).
  Returns:
    ColumnarData with features keyed by feature_name and labels by label field name.
  Raises:
    FileNotFoundError: a path pattern matches nothing.
    ValueError: an unknown column, or (without ignore_error) a malformed row; the message
      names the file and 1-based line.
  """
  _fields_and_columns(data_config, feature_configs)  # config errors before touching files
  if len(data_config.separator) != 1:
    raise ValueError(f'data_config.separator must be one character, got '
                     f'{data_config.separator!r}')
  os.makedirs(cache_dir, exist_ok=True)
  return _concat([_load_file(p, data_config, feature_configs, cache_dir, log)
                  for p in _expand_paths(paths)])
