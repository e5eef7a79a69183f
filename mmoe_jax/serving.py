"""Serves an exported model (scripts/export.py): raw rows in, EasyRec's outputs out.

It imports jax, numpy and pyarrow, and from this package only the numpy/pyarrow feature
transforms that training uses (data/features.py through data/columnar.py), so serving
computes the same ids as training did, and needs no Flax, no model code and no config
(tests/test_architecture.py holds it to that). An artifact directory holds:

  manifest.json    what the function expects and returns: each input (its column, type,
                   default, and the feature transform: hashing and bucket count,
                   vocabulary, boundaries, tag separator), the CSV layout, and each output
  model.jaxexport  the prediction function, serialized by jax.export (StableHLO), of
                   (parameters, {feature_name: ids or values}) with a symbolic batch size
  params.npz       the parameters, the function's first argument, leaf by leaf

  predictor = serving.load('export_dir')
  predictor.predict_csv('rows.csv')   # {'probs_ctr': array [N], ...}, in row order
  predictor.predict({'user_id': ['u1', 'u2'], 'price': [3, 7], ...})
"""

import json
import os
import types

import jax
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmoe_jax.data import columnar

MANIFEST, FUNCTION, PARAMS = 'manifest.json', 'model.jaxexport', 'params.npz'
FORMAT = 1  # manifest.json's format; a loader refuses another


def load(directory, batch_size=None):
  """The Predictor of an artifact directory; batch_size: rows per call (default: the
  manifest's, the config's eval_batch_size)."""
  return Predictor(directory, batch_size)


class Inputs:
  """The input half of a manifest: how raw columns become the function's arrays."""

  def __init__(self, spec):
    self.spec = spec
    self.fields = [types.SimpleNamespace(**f) for f in spec['input_fields']]
    self.features = tuple(types.SimpleNamespace(**f) for f in spec['features'])
    self.columns = sorted({f.input_names[0] for f in self.features},
                          key=[f.input_name for f in self.fields].index)

  def read_csv(self, path, keep=()):
    """The columns a prediction needs (and `keep`, e.g. id columns to pass through) of a
    CSV, as a pyarrow table of strings.

    With a header (the manifest's with_header), columns are found by name and others,
    labels included, may be absent or extra. Without one, the columns are the config's
    input_fields in order, with or without its label fields.
    """
    sep = self.spec['separator']
    names = [f.input_name for f in self.fields]
    if self.spec['with_header']:
      with open(path, newline='') as f:
        header = f.readline().rstrip('\r\n').split(sep)
      names, skip = header, 1
    else:
      with open(path, newline='') as f:
        width = len(f.readline().rstrip('\r\n').split(sep))
      unlabeled = [n for n in names if n not in self.spec['label_fields']]
      if width == len(unlabeled) and width != len(names):
        names = unlabeled
      elif width != len(names):
        raise ValueError(f'{path}:1: expected {len(names)} columns (input_fields) or '
                         f'{len(unlabeled)} (input_fields without label_fields), got {width}')
      skip = 0
    wanted = list(dict.fromkeys(self.columns + list(keep)))
    missing = [c for c in wanted if c not in names]
    if missing:
      raise ValueError(f'{path}: no column {", ".join(map(repr, missing))} (columns: '
                       f'{", ".join(names)})')
    if os.path.getsize(path) == 0:
      return pa.table({c: pa.array([], pa.string()) for c in wanted})
    return pacsv.read_csv(
        path, read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip),
        parse_options=pacsv.ParseOptions(delimiter=sep),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in wanted},
                                             include_columns=wanted))

  def table(self, columns):
    """A dict of raw columns (lists or arrays of strings or numbers; None is empty) as the
    table read_csv gives."""
    missing = [c for c in self.columns if c not in columns]
    if missing:
      raise ValueError(f'no column {", ".join(map(repr, missing))} in the input')
    lengths = {len(columns[c]) for c in self.columns}
    if len(lengths) > 1:
      raise ValueError(f'columns of different lengths: {sorted(lengths)}')
    return pa.table({c: pc.fill_null(pa.array(_plain(columns[c])).cast(pa.string()), '')
                     for c in self.columns})

  def transform(self, table, source='input'):
    """The feature arrays of a table: {feature_name: array}, as training computes them."""
    data_config = types.SimpleNamespace(input_fields=self.fields, label_fields=())
    feats, _, bad_jobs = columnar.transform_table(table, data_config, self.features)
    if bad_jobs:
      bad, job = bad_jobs[0]
      row = int(np.argmax(bad))
      raise ValueError(f'{source}: data row {row + 1}, column {job.column!r} ({job.desc}): '
                       f'{table[job.column][row].as_py()!r} is not {job.expected}')
    return feats


class Predictor:
  """An artifact loaded for prediction (see the module docstring)."""

  def __init__(self, directory, batch_size=None):
    with open(os.path.join(directory, MANIFEST)) as f:
      self.manifest = json.load(f)
    if self.manifest.get('format') != FORMAT:
      raise ValueError(f'{directory}/{MANIFEST}: format {self.manifest.get("format")!r}, '
                       f'this loader reads format {FORMAT}')
    with open(os.path.join(directory, FUNCTION), 'rb') as f:
      self.exported = jax.export.deserialize(bytearray(f.read()))
    with np.load(os.path.join(directory, PARAMS)) as z:
      self.params = [jax.device_put(z[f'p{i}']) for i in range(len(z.files))]
    self.inputs = Inputs(self.manifest['inputs'])
    self.outputs = [o['name'] for o in self.manifest['outputs']]
    self.batch_size = batch_size or self.manifest['batch_size']
    self._call = jax.jit(self.exported.call)

  @property
  def platforms(self):
    return self.exported.platforms

  def predict_csv(self, path, keep=()):
    """{output name: numpy array} for every row of a CSV, in row order (see
    Inputs.read_csv for the columns it takes)."""
    return self.predict_table(self.inputs.read_csv(path, keep), path)

  def predict(self, columns):
    """{output name: numpy array} for a dict of raw columns {input name: values}."""
    return self.predict_table(self.inputs.table(columns))

  def predict_table(self, table, source='input'):
    return self.predict_features(self.inputs.transform(table, source), table.num_rows)

  def predict_features(self, feats, num_rows):
    """Calls the function on batch_size rows at a time (the last batch padded with row 0,
    so every call has one shape and compiles once)."""
    if not num_rows:
      return {o['name']: np.zeros([0] + o['shape'], o['dtype'])
              for o in self.manifest['outputs']}
    size = min(self.batch_size, num_rows)
    chunks = []
    for start in range(0, num_rows, size):
      rows = np.arange(start, start + size)
      rows[rows >= num_rows] = 0
      chunks.append(jax.device_get(self._call(self.params, {k: v[rows] for k, v in
                                                             feats.items()})))
    return {k: np.concatenate([c[k] for c in chunks])[:num_rows] for k in chunks[0]}


def _plain(values):
  """Values pyarrow can cast to strings: a numpy array as a list (its own str dtype too)."""
  return values.tolist() if isinstance(values, np.ndarray) else list(values)
