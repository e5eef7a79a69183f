"""The columnar cache every input builds: feature and label arrays, one .npy each.

An input (csv_input.py, tfds_input.py) reads its rows as a pyarrow table of the columns
the config uses; `transform_table` applies the feature transforms (features.py) to it, and
`load_or_build` keeps the result under cache_dir/<key>/, so later runs only memory-map it.
"""
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import io
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa

from mmoe_jax.data import features


@dataclasses.dataclass
class ColumnarData:
  """Rows of one or more files as arrays: read-only memory maps of one file's cache, or Rows
  over several files' maps."""
  features: dict[str, np.ndarray]  # keyed by feature_name; [N] or [N, L] (TagFeature)
  labels: dict[str, np.ndarray]  # keyed by label field name; float32 [N]
  num_rows: int
  skipped_rows: int  # malformed rows skipped under ignore_error
  # keyed by input field name: int32 [N] group code of each row's raw value, for eval metrics
  # grouped by a field (gauc, session_auc); filled by data/groups.py, not cached
  groups: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  # keyed as groups: the distinct raw values (a pyarrow array), code k being value k; what
  # file_shard's evaluation merges over processes (data/groups.py); also keyed by each
  # session id label (signals.session_key), which file_shard's training merges
  group_values: dict = dataclasses.field(default_factory=dict)
  # the rows of each file, in row order, when these are whole files' rows (load_or_build,
  # concat); () after take. file_shard's eval_config.num_examples reads it.
  file_rows: tuple = ()

  def take(self, idx: np.ndarray) -> 'ColumnarData':
    """Rows `idx` (in that order), e.g. one batch; skipped_rows is kept from the source."""
    return ColumnarData(
        features={k: np.asarray(v[idx]) for k, v in self.features.items()},
        labels={k: np.asarray(v[idx]) for k, v in self.labels.items()},
        num_rows=len(idx), skipped_rows=self.skipped_rows,
        groups={k: v[idx] for k, v in self.groups.items()}, group_values=self.group_values)

  def arrays(self) -> dict:
    """{'features', 'labels'} as numpy arrays, every row in memory (to put on a device)."""
    return dict(features={k: np.asarray(v) for k, v in self.features.items()},
                labels={k: np.asarray(v) for k, v in self.labels.items()})


def plain(x):
  """ConfigDict / tuple tree -> JSON-able plain values, for a canonical cache key."""
  if hasattr(x, 'items'):
    return {k: plain(v) for k, v in sorted(x.items())}
  if isinstance(x, (list, tuple)):
    return [plain(v) for v in x]
  return x


def parallel(fn, items, workers=None) -> list:
  """[fn(x) for x in items] in `workers` threads (default: one per core): pyarrow compute,
  numpy and file writes release the GIL. The first failure in item order raises once the
  calls already running end; the calls not yet started are dropped (a bad first file of
  many does not wait for the rest to build)."""
  with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
    return list(pool.map(fn, items))  # map drops the calls not started when one raises


def prefetch(iterator, size=2):
  """Yields the items of `iterator`, produced by a background thread up to `size` ahead: a
  file's next record batch is read (pyarrow releases the GIL) while this one is transformed.
  An exception in the reader is raised here, after the items before it."""
  items = queue.Queue(maxsize=size)
  stop = threading.Event()
  done = object()

  def produce():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            items.put((item, None), timeout=0.1)
            break
          except queue.Full:
            pass
        if stop.is_set():
          return
      items.put((done, None))
    except BaseException as e:  # pylint: disable=broad-except
      items.put((done, e))

  thread = threading.Thread(target=produce, daemon=True, name='mmoe_jax-read')
  thread.start()
  try:
    while True:
      item, error = items.get()
      if error is not None:
        raise error
      if item is done:
        return
      yield item
  finally:
    stop.set()
    thread.join()


def load_files(load, paths, at_once=2):
  """concat([load(p) for p in paths]), up to `at_once` files loaded (their caches built) at a
  time. The first failing file in `paths` order raises."""
  return concat(parallel(load, paths, max(1, min(at_once, len(paths)))))


def fields_and_columns(data_config, feature_configs):
  """input_name -> field config, and the columns any feature or label reads (field order)."""
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


class Job(NamedTuple):
  """One output array of a table."""
  is_label: bool
  key: str  # feature_name or label name
  column: str  # input column it reads
  transform: Callable[[], tuple[np.ndarray, np.ndarray | None]]  # -> (values, bad rows)
  desc: str  # the column, for error messages
  expected: str  # what every value of the column must be, for error messages


def _expected(input_type, numeric):
  """What every value of a column must be (features.py's rules), for error messages."""
  if input_type in features.INT_TYPES:
    return f'an integer within {input_type}'
  return 'a finite float32 number' if numeric else 'an integer within INT32'


def transform_table(table, data_config, feature_configs):
  """Every feature and label of `table` (pyarrow, one column per used input field).

  Returns (features, labels, bad_jobs): arrays keyed by feature_name / label name, and
  (bad row mask, Job) for each output that met values it could not parse.
  """
  fields, _ = fields_and_columns(data_config, feature_configs)
  jobs = []
  for fc in feature_configs:
    name = fc.input_names[0]
    field = fields[name]
    raw = fc.feature_type == 'RawFeature'
    jobs.append(Job(False, fc.feature_name, name,
                    functools.partial(features.transform_feature, table[name], fc, field),
                    field.input_type + ('' if raw else f", feature '{fc.feature_name}'"),
                    _expected(field.input_type, numeric=raw)))
  for name in data_config.label_fields:
    field = fields[name]
    jobs.append(Job(True, name, name,
                    functools.partial(features.transform_label, table[name], field),
                    field.input_type, _expected(field.input_type, numeric=True)))
  results = parallel(lambda job: job.transform(), jobs)
  feats, labels, bad_jobs = {}, {}, []
  for job, (values, bad) in zip(jobs, results):
    (labels if job.is_label else feats)[job.key] = values
    if bad is not None:
      bad_jobs.append((bad, job))
  return feats, labels, bad_jobs


def transform_batch(batch, data_config, feature_configs, where, first_row=0):
  """The features and labels of one record batch of a file, rows with bad values dropped
  under ignore_error: (features, labels, number of rows dropped).

  Without ignore_error a bad value raises ValueError naming `where(row)` (the file and line
  or row of the batch's row `first_row + row`), the column and the value.
  """
  feats, labels, bad_jobs = transform_table(batch, data_config, feature_configs)
  if not bad_jobs:
    return feats, labels, 0
  bad = np.logical_or.reduce([mask for mask, _ in bad_jobs])
  if not data_config.ignore_error:
    row = int(np.argmax(bad))
    job = next(job for mask, job in bad_jobs if mask[row])
    value = batch[job.column][row].as_py()
    value = value.decode(errors='replace') if isinstance(value, bytes) else value
    raise ValueError(f'{where(first_row + row)}: column {job.column!r} ({job.desc}): '
                     f'{value!r} is not {job.expected}')
  keep = ~bad
  feats = {k: v[keep] for k, v in feats.items()}
  labels = {k: v[keep] for k, v in labels.items()}
  # Dropping rows may have dropped the longest tag list; keep L = max token count (>= 1).
  for k, v in feats.items():
    if _is_tags(v):
      feats[k] = v[:, :max(1, int((v >= 0).sum(1).max(initial=0)))]
  return feats, labels, int(bad.sum())


def load_or_build(entry, build, source, log):
  """The cache entry directory `entry` as ColumnarData, running `build` first if missing.

  build() -> (features, labels, num_rows, skipped_rows). `source` names the input in logs.
  """
  def chunks():
    feats, labels, _, skipped = build()
    yield feats, labels, skipped
  return load_or_build_chunks(entry, chunks, source, log)


def load_or_build_chunks(entry, chunks, source, log):
  """The cache entry directory `entry` as ColumnarData, writing it from `chunks()` first if
  missing.

  chunks() yields (features, labels, skipped_rows) of consecutive row ranges, e.g. the record
  batches of a streamed file: each array is appended to its .npy file as it comes (the header,
  which needs the row count, is written last), so a build holds one chunk in memory, not the
  file. Tag arrays ([N, L] int) are padded with -1 to the widest chunk's L, as a whole-file
  read makes them.
  """
  if os.path.exists(os.path.join(entry, 'meta.json')):
    log(f'{source}: cache hit {entry}')
  else:
    with _build_memory_pool():
      _build(entry, chunks, source, log)

  with open(os.path.join(entry, 'meta.json')) as f:
    meta = json.load(f)
  # mmap: loading costs nothing up front, the OS page cache holds one copy shared by every
  # process reading this cache (sweeps, eval), and take() copies only the rows a batch needs.
  # numpy cannot mmap a zero-byte array, so empty files load normally.
  mode = 'r' if meta['num_rows'] else None
  load = lambda name: np.load(os.path.join(entry, name), mmap_mode=mode)
  feats = {k: load(f'feature{i}.npy') for i, k in enumerate(meta['features'])}
  labels = {k: load(f'label{i}.npy') for i, k in enumerate(meta['labels'])}
  return ColumnarData(feats, labels, meta['num_rows'], meta['skipped_rows'],
                      file_rows=(meta['num_rows'],))


def _build(entry, chunks, source, log):
  """Writes the cache entry `entry` from chunks() (load_or_build_chunks)."""
  start = time.time()
  # Write into a temp dir and rename it into place, so an interrupted build never leaves a
  # half-written entry that a later run would take for a cache hit.
  tmp = tempfile.mkdtemp(prefix='.tmp-', dir=os.path.dirname(entry))
  try:
    num_rows, skipped, names, outputs = 0, 0, None, None
    for feats, labels, chunk_skipped in chunks():
      skipped += chunk_skipped
      arrays = [*feats.values(), *labels.values()]
      if names is None:
        names = (list(feats), list(labels))
        files = [f'feature{i}.npy' for i in range(len(feats))]
        files += [f'label{i}.npy' for i in range(len(labels))]
        outputs = [_NpyWriter(os.path.join(tmp, f)) for f in files]
      num_rows += len(arrays[0]) if arrays else 0
      parallel(lambda w: w[0].append(w[1]), list(zip(outputs, arrays)))
    parallel(lambda w: w.close(), outputs)
    meta = dict(num_rows=num_rows, skipped_rows=skipped, source=source,
                features=names[0], labels=names[1])
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f)
    try:
      os.replace(tmp, entry)
    except OSError:
      if not os.path.exists(os.path.join(entry, 'meta.json')):
        raise
      # Another process built the same entry meanwhile; its content is identical.
  finally:
    for w in outputs or ():
      w.file.close()
    shutil.rmtree(tmp, ignore_errors=True)
  log(f'{source}: built cache {entry} ({num_rows} rows, {time.time() - start:.1f}s)')


# Builds running at once (load_files' threads) share one swap of Arrow's process-wide pool.
_pool_lock = threading.Lock()
_pool_builds = 0
_pool_saved = None


@contextlib.contextmanager
def _build_memory_pool():
  """Arrow allocates from build_memory_pool() while any build runs, from the previous pool
  again after the last one ends, when the builds' freed memory goes back to the OS
  (release_heap; not while another build would reuse it)."""
  global _pool_builds, _pool_saved
  with _pool_lock:
    if not _pool_builds:
      _pool_saved = pa.default_memory_pool()
      pa.set_memory_pool(build_memory_pool())
    _pool_builds += 1
  try:
    yield
  finally:
    with _pool_lock:
      _pool_builds -= 1
      if not _pool_builds:
        release_heap()
        pa.set_memory_pool(_pool_saved)


def build_memory_pool():
  """The Arrow memory pool a cache build allocates from: jemalloc where pyarrow has it, else
  the C heap; the previous pool is back after the build.

  Arrow's default pool, mimalloc, backs its memory with transparent huge pages where the
  kernel gives them on request (THP 'madvise', as on the 2-core machine) and hands freed
  pages back within milliseconds, so every record batch faults fresh 2 MB pages in and zeroes
  them: 0.8 s of CPU per million taobao rows in perf, most of a Parquet build. jemalloc and
  the C heap zero a tenth of that; jemalloc also peaked lowest (1M-row builds: 0.28-0.40 GB
  anonymous memory, against 0.41-0.50 GB on the C heap). jemalloc keeps freed pages for
  _JEMALLOC_DECAY_MS before handing them back, so that the next record batch reuses them
  rather than faulting in new ones (a 30M-row Parquet build: 0.034 -> 0.009-0.016 page
  faults per row); release_heap hands them back after the build.
  """
  global _jemalloc_decay_set
  try:
    if not _jemalloc_decay_set:
      # jemalloc applies it to arenas made from now on: before the first build allocates.
      pa.jemalloc_set_decay_ms(_JEMALLOC_DECAY_MS)
      _jemalloc_decay_set = True
    return pa.jemalloc_memory_pool()
  except NotImplementedError:  # a pyarrow built without jemalloc
    return pa.system_memory_pool()


_JEMALLOC_DECAY_MS = 10_000
_jemalloc_decay_set = False


def release_heap():
  """Returns the build's freed temporaries to the OS (pyarrow's memory pool, then the C
  heap), so that they do not count against the training that follows in the same process.
  glibc's malloc_trim is a hint; elsewhere the heap is left as it is."""
  pa.default_memory_pool().release_unused()
  try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
  except (OSError, AttributeError):
    pass


class _NpyWriter:
  """One array of a cache entry, written chunk by chunk as a .npy file: the rows go after a
  header-sized gap, and `close` fills in the header once the row count is known. Tag arrays
  whose chunks differ in width are rewritten once, padded with -1 to the widest."""

  HEADER = 128  # the .npy 1.0 header of any [N] or [N, K] array, padded to 64-byte alignment

  def __init__(self, path):
    self.path, self.file = path, open(path, 'wb')
    self.file.write(b'\0' * self.HEADER)
    self.dtype, self.shapes = None, []

  def append(self, values):
    _append(self.file, np.ascontiguousarray(values))
    self.dtype = values.dtype
    self.shapes.append(values.shape)

  def close(self):
    self.file.close()
    rows = sum(shape[0] for shape in self.shapes)
    trailing = {shape[1:] for shape in self.shapes}
    if len(trailing) > 1:  # tags of different widths
      self._pad(rows, max(trailing))
      return
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(
        descr=np.lib.format.dtype_to_descr(self.dtype), fortran_order=False,
        shape=(rows,) + trailing.pop()))
    assert len(header.getvalue()) == self.HEADER, header.getvalue()
    with open(self.path, 'r+b') as f:
      f.write(header.getvalue())

  def _pad(self, rows, trailing):
    raw = np.memmap(self.path, self.dtype, 'r', offset=self.HEADER)
    padded = self.path + '.padded'
    out = np.lib.format.open_memmap(padded, 'w+', self.dtype, (rows,) + trailing)
    row = offset = 0
    for shape in self.shapes:
      size = int(np.prod(shape))
      out[row:row + shape[0], shape[1]:] = -1
      out[row:row + shape[0], :shape[1]] = raw[offset:offset + size].reshape(shape)
      row, offset = row + shape[0], offset + size
    out.flush()
    del out, raw
    os.replace(padded, self.path)


def _append(file, values):
  values.tofile(file)


def _is_tags(v):
  """A TagFeature's [N, L] ids (padded with -1), not a RawFeature's [N, D] vectors."""
  return v.ndim == 2 and v.dtype.kind == 'i'


class Rows:
  """The rows of several arrays (one per file, memory maps of their caches) as one array,
  without copying them: indexing with row numbers gathers from each part directly, so a
  dataset of many files costs no more host memory than its batches.

  Tag arrays ([N, L] int) read as padded with -1 to the widest part's L. np.asarray(rows)
  materialises every row (device-resident input, metrics over all eval labels).
  """

  def __init__(self, parts):
    self.parts = parts
    self.starts = np.cumsum([0] + [len(p) for p in parts])
    width = max(p.shape[1] for p in parts) if _is_tags(parts[0]) else None
    self.shape = (int(self.starts[-1]),) + ((width,) if width else parts[0].shape[1:])
    self.dtype, self.ndim = parts[0].dtype, parts[0].ndim
    self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

  def __len__(self):
    return self.shape[0]

  def __getitem__(self, idx):
    if isinstance(idx, slice) and idx.step in (None, 1):  # contiguous: a slice of each part
      start, stop, _ = idx.indices(len(self))
      return np.concatenate([self._slice(p, start, stop) for p in range(len(self.parts))
                             if self.starts[p] < stop and start < self.starts[p + 1]]
                            or [np.empty((0,) + self.shape[1:], self.dtype)])
    idx = np.arange(*idx.indices(len(self))) if isinstance(idx, slice) else np.asarray(idx)
    out = np.empty(idx.shape + self.shape[1:], self.dtype)
    part = np.searchsorted(self.starts, idx, side='right') - 1
    for p in np.unique(part):
      sel = part == p
      rows = self.parts[p][idx[sel] - self.starts[p]]
      if rows.ndim == 2 and rows.shape[1] < out.shape[1]:
        rows = _pad_tags(rows, out.shape[1])
      out[sel] = rows
    return out

  def _slice(self, p, start, stop):
    rows = self.parts[p][max(start - self.starts[p], 0):stop - self.starts[p]]
    return _pad_tags(rows, self.shape[1]) if _is_tags(rows) else np.asarray(rows)

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)

  def astype(self, dtype):
    return self[:].astype(dtype)

  def tolist(self):
    return self[:].tolist()


def _pad_tags(v: np.ndarray, width: int) -> np.ndarray:
  return np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=-1)


def concat(parts: list[ColumnarData]) -> ColumnarData:
  """Rows of all parts in order, as one index over the parts' arrays (Rows, no copy)."""
  if len(parts) == 1:
    return parts[0]
  feats = {k: Rows([p.features[k] for p in parts]) for k in parts[0].features}
  labels = {k: Rows([p.labels[k] for p in parts]) for k in parts[0].labels}
  return ColumnarData(feats, labels, sum(p.num_rows for p in parts),
                      sum(p.skipped_rows for p in parts),
                      file_rows=sum((p.file_rows for p in parts), ()))
