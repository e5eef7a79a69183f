"""The columnar cache every input builds: feature and label arrays, one .npy each.

An input (csv_input.py, tfds_input.py) reads its rows as a pyarrow table of the columns
the config uses; `transform_table` applies the feature transforms (features.py) to it, and
`load_or_build` keeps the result under cache_dir/<key>/, so later runs only memory-map it.
"""
import concurrent.futures
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import time
from typing import Callable, NamedTuple

import numpy as np

from mmoe_jax.data import features


@dataclasses.dataclass
class ColumnarData:
  """Rows of one or more files as arrays (read-only memory maps of the cache for one file)."""
  features: dict[str, np.ndarray]  # keyed by feature_name; [N] or [N, L] (TagFeature)
  labels: dict[str, np.ndarray]  # keyed by label field name; float32 [N]
  num_rows: int
  skipped_rows: int  # malformed rows skipped under ignore_error
  # keyed by input field name: int32 [N] group code of each row's raw value, for eval metrics
  # grouped by a field (gauc, session_auc); filled by data/groups.py, not cached
  groups: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def take(self, idx: np.ndarray) -> 'ColumnarData':
    """Rows `idx` (in that order), e.g. one batch; skipped_rows is kept from the source."""
    return ColumnarData(
        features={k: np.asarray(v[idx]) for k, v in self.features.items()},
        labels={k: np.asarray(v[idx]) for k, v in self.labels.items()},
        num_rows=len(idx), skipped_rows=self.skipped_rows,
        groups={k: v[idx] for k, v in self.groups.items()})


def plain(x):
  """ConfigDict / tuple tree -> JSON-able plain values, for a canonical cache key."""
  if hasattr(x, 'items'):
    return {k: plain(v) for k, v in sorted(x.items())}
  if isinstance(x, (list, tuple)):
    return [plain(v) for v in x]
  return x


def parallel(fn, items) -> list:
  """[fn(x) for x in items] on all cores: pyarrow compute, numpy and file writes release the GIL."""
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    return list(pool.map(fn, items))


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


def load_or_build(entry, build, source, log):
  """The cache entry directory `entry` as ColumnarData, running `build` first if missing.

  build() -> (features, labels, num_rows, skipped_rows). `source` names the input in logs.
  """
  if os.path.exists(os.path.join(entry, 'meta.json')):
    log(f'{source}: cache hit {entry}')
  else:
    start = time.time()
    feats, labels, num_rows, skipped = build()
    # Write into a temp dir and rename it into place, so an interrupted build never leaves a
    # half-written entry that a later run would take for a cache hit.
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=os.path.dirname(entry))
    try:
      meta = dict(num_rows=num_rows, skipped_rows=skipped, source=source,
                  features=list(feats), labels=list(labels))
      files = [(f'feature{i}.npy', v) for i, v in enumerate(feats.values())]
      files += [(f'label{i}.npy', v) for i, v in enumerate(labels.values())]
      parallel(lambda f: np.save(os.path.join(tmp, f[0]), f[1]), files)
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
    log(f'{source}: built cache {entry} ({num_rows} rows, {time.time() - start:.1f}s)')

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


def concat(parts: list[ColumnarData]) -> ColumnarData:
  """Rows of all parts in order; tag arrays padded with -1 to the widest part's L."""
  if len(parts) == 1:
    return parts[0]
  feats = {}
  for k in parts[0].features:
    arrays = [p.features[k] for p in parts]
    if arrays[0].ndim == 2 and arrays[0].dtype.kind == 'i':  # tags, not raw vectors
      width = max(a.shape[1] for a in arrays)
      arrays = [_pad_tags(a, width) for a in arrays]
    feats[k] = np.concatenate(arrays)
  labels = {k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels}
  return ColumnarData(feats, labels, sum(p.num_rows for p in parts),
                      sum(p.skipped_rows for p in parts))
