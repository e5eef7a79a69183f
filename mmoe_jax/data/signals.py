"""Per-row training signals beside the labels: sample weights, task-space masks, session ids.

EasyRec reads them from raw input columns in every batch (docs/training_signals.md):
data_config.sample_weight (a number per row), a tower's task_space_indicator_name /
_value (a string comparison of the raw value) and a pairwise or JRC loss's session_name
(rows of one session are compared with each other). Here they are computed once when a
CSV input is loaded, from its raw columns, and added to the data's labels under keys that
start with '@' (read only through this module's key functions), so batches stay numeric
and static-shaped and every input path (device-resident, streaming, sweeps) carries them
as it carries labels:

  SAMPLE_WEIGHT            float32 [N], the sample_weight field's values
  mask_key(name, value)    float32 [N], 1 where the raw `name` equals `value`
  session_key(name)        int32 [N], one id per distinct raw value of `name` in the data
                           (its distinct values in group_values under the same key: under
                           file_shard, merge_sessions codes them over every process)
"""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmoe_jax.data import features, groups

SAMPLE_WEIGHT = '@sample_weight'
# The loss_param members that may name a session (config/schema.py LOSS).
LOSS_PARAMS = ('f1_reweighted_loss', 'binary_focal_loss', 'pairwise_loss', 'pairwise_focal_loss',
               'pairwise_logistic_loss', 'jrc_loss')


def mask_key(name, value):
  return f'@{name}=={value}'


def session_key(name):
  return f'@session:{name}'


def session_name(loss):
  """The input field a `losses {}` entry's parameters name as session_name, or ''."""
  param = next((loss[p] for p in LOSS_PARAMS if p in loss), None)
  return param.get('session_name', '') if param is not None else ''


def needed(config):
  """{key: (kind, input field, value)} of the signals a config's losses read."""
  from mmoe_jax.config import task_towers  # config imports data lazily too
  out = {}
  if config.data_config.sample_weight:
    out[SAMPLE_WEIGHT] = ('weight', config.data_config.sample_weight, None)
  if config.model_config.model_class == 'ESMM':
    return out
  for tower in task_towers(config.model_config):
    if tower.task_space_indicator_name:
      name, value = tower.task_space_indicator_name, tower.task_space_indicator_value
      out[mask_key(name, value)] = ('mask', name, value)
    for loss in tower.losses:
      name = session_name(loss)
      if name:
        out[session_key(name)] = ('session', name, None)
  return out


def columns(config):
  """The raw input columns the config's signals read, in input_fields order."""
  order = [f.input_name for f in config.data_config.input_fields]
  return sorted({name for _, name, _ in needed(config).values()}, key=order.index)


def attach(data, paths, config, raw, log=print):
  """`data` (ColumnarData of the CSV or Parquet files `paths`) with the signals the config
  reads added to its labels; `data` itself if it reads none.

  `raw` is (files, {column: raw cells}) of `paths`, as data.raw_columns reads them, holding
  at least columns(config): data.load reads them in one pass with any other raw columns.
  Rows line up with `data` unless data_config.ignore_error dropped rows for bad values,
  which is an error.
  """
  wanted = needed(config)
  if not wanted:
    return data
  fields = {f.input_name: f for f in config.data_config.input_fields}
  names = columns(config)
  files, cells = raw
  rows = len(cells[names[0]])
  if rows != data.num_rows:
    raise ValueError(f'{paths}: {rows - data.num_rows} rows were skipped for bad values '
                     '(data_config.ignore_error), so the rows of data_config.sample_weight, '
                     'task_space_indicator_name or session_name cannot be matched; fix the rows')
  labels, values = dict(data.labels), dict(data.group_values)
  for key, (kind, name, value) in wanted.items():
    labels[key] = SIGNALS[kind](cells[name], fields[name], value, files)
    if kind == 'session':  # its ids and the distinct values they index (merge_sessions)
      labels[key], values[key] = labels[key]
  log(f'{paths}: read {", ".join(sorted(wanted))} from columns {", ".join(names)}')
  return dataclasses.replace(data, labels=labels, group_values=values)


def merge_sessions(data, gather, index):
  """`data` (process `index`'s training rows under file_shard) with session ids that mean
  one raw value on every process: equal values one session, different values never.

  EasyRec computes a pairwise or JRC loss on each worker's own batch, so its sessions never
  span workers; one process's global batch compares the sessions of all its rows, by value.
  Under file_shard a global batch is every process's rows, each process having coded only
  the values of its own files, so its ids are recoded over every process's distinct values
  (groups.merged_values): a session whose rows sit in two processes' files stays one
  session, as with one process. `gather(values)` gives every process's (lengths, bytes) of
  its distinct values (groups.value_bytes), in process order (a collective:
  evaluation.gather_values); it costs each process's distinct session values once.
  """
  labels = dict(data.labels)
  for key in labels:
    if key.startswith(session_key('')):
      ids = groups.merged_values(gather(data.group_values[key]))[index]
      labels[key] = ids[np.asarray(labels[key])].astype(np.int32)
  return dataclasses.replace(data, labels=labels)


def _weight(column, field, _, files):
  values, bad = features.transform_label(column, field)
  if bad is not None and bad.any():
    row = int(np.argmax(bad))
    raise ValueError(f"{', '.join(files)}: data row {row + 1}: data_config.sample_weight "
                     f"field '{field.input_name}' holds {column[row].as_py()!r}, not a number")
  return values


def _text(column, field):
  """The raw values as strings, an empty cell read as default_val (EasyRec's CSV rule)."""
  text = column.cast(pa.string())
  if field.default_val:
    text = pc.if_else(pc.equal(text, ''), field.default_val, text)
  return text


def _mask(column, field, value, _):
  return pc.equal(_text(column, field), value).to_numpy(zero_copy_only=False).astype(np.float32)


def _session(column, field, _, files):
  """(dense ids of the rows, the distinct values as text, id k being value k): equal raw
  values (as integers for an INT field, as EasyRec compares them, and as their canonical
  decimal text) get equal ids, over every file of the input."""
  values = _text(column, field)
  if field.input_type in features.INT_TYPES:
    values = pc.if_else(pc.equal(values, ''), '0', values)
    try:
      values = pc.cast(values, pa.int64())
    except pa.ArrowInvalid as e:
      raise ValueError(f"{', '.join(files)}: session field '{field.input_name}' "
                       f'({field.input_type}): {e}') from None
  ids, distinct = groups.encode(values)
  return ids, distinct.cast(pa.string())


SIGNALS = {'weight': _weight, 'mask': _mask, 'session': _session}
