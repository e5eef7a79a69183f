"""Group codes of eval rows, for metrics computed per group (gauc, session_auc).

EasyRec groups rows by the raw value of an input field (a user id, a session id), not by
its hashed embedding id, whose buckets collide. The field need not feed any feature, so it
is not in the columnar cache: data.load reads the raw column once more from the eval CSV
or Parquet files (as bytes, parsed as the cache's rows are; in one pass with the training
signals' columns), and `with_groups` codes each distinct value as a dense int32 (pyarrow
dictionary_encode). Values are compared as their text in the file.
"""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmoe_jax.config import task_towers
from mmoe_jax.config.validate import GROUP_FIELDS


def group_fields(config):
  """The input fields any tower's gauc / session_auc groups by, in first-use order."""
  fields = []
  for tower in task_towers(config.model_config):
    for metric in tower.metrics_set:
      for kind, field in GROUP_FIELDS.items():
        if kind in metric and metric[kind][field] not in fields:
          fields.append(metric[kind][field])
  return fields


def with_groups(columns, paths, config, raw):
  """`columns` (the rows of CSV or Parquet `paths`, as data.load gives them) with the group
  codes of every field in group_fields(config), and each field's distinct values (code k is
  value k: group_values, which file_shard's evaluation merges over processes, merged_codes);
  `columns` itself when there are none.

  `raw` is (files, {column: raw cells}) of `paths`, as data.raw_columns reads them, holding
  at least those fields: data.load reads them in one pass with any other raw columns.
  Raises ValueError naming the field when rows were skipped for bad values (ignore_error):
  the re-read column could then not be lined up with the kept rows.
  """
  fields = group_fields(config)
  if not fields:
    return columns
  groups, values = {}, {}
  for field in fields:
    cells = raw[1][field]
    if len(cells) != columns.num_rows:
      raise ValueError(
          f"grouped eval metric on input field {field!r}: {paths!r} has {len(cells)} rows "
          f'of that field but {columns.num_rows} usable rows ({columns.skipped_rows} skipped '
          'as malformed under ignore_error), so the groups cannot be lined up; fix or drop '
          'the malformed rows')
    groups[field], values[field] = encode(cells)
  return dataclasses.replace(columns, groups={**columns.groups, **groups},
                            group_values={**columns.group_values, **values})


def encode(values):
  """(int32 code of each of `values` (a pyarrow (Chunked)Array), its distinct values), code k
  being distinct value k: pyarrow's dictionary encoding, for group and session ids."""
  if isinstance(values, pa.ChunkedArray):
    values = values.combine_chunks()
  coded = pc.dictionary_encode(values)
  return coded.indices.to_numpy(zero_copy_only=False).astype(np.int32), coded.dictionary


# Under file_shard each process codes the values of its own rows, so codes differ between
# processes; evaluation gathers every process's distinct values as their raw bytes (not a
# hash of them: a hash can collide and merge two users' groups silently) and codes them
# anew, the same way on every process (the same bytes in process order), so gauc and
# session_auc group all rows by value exactly, as one process does. It costs each process's
# distinct values once per evaluation, about what the labels gathered beside them cost.
# Training's session ids are merged the same way, once per run (signals.merge_sessions).


def value_bytes(values):
  """(lengths int32 [K], bytes uint8) of `values` (a pyarrow array of K texts or bytes, a
  group's distinct values): arrays that collectives can gather (merged_codes reads them)."""
  values = values.cast(pa.large_binary())
  offsets = np.frombuffer(values.buffers()[1], np.int64)[values.offset:][:len(values) + 1]
  data = values.buffers()[2]
  data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
  return np.diff(offsets).astype(np.int32), data[offsets[0]:offsets[-1]]


def merged_codes(codes, values):
  """The group codes of the rows of every process, in process order, equal exactly where
  the raw values are equal: `codes` holds each process's codes of its rows, indexing its
  distinct values, whose (lengths, bytes) from value_bytes `values` holds."""
  ids = merged_values(values)
  return np.concatenate([i[c] for i, c in zip(ids, codes)]).astype(np.int32)


def merged_values(parts):
  """Codes of every process's distinct values over all of them, one int64 array per process
  (in process order): equal exactly where the raw values are equal, the same on every
  process. `parts` holds each process's (lengths, bytes) of its values, from value_bytes."""
  values = [pa.LargeBinaryArray.from_buffers(
      pa.large_binary(), len(lengths),
      [None, pa.py_buffer(np.r_[0, np.cumsum(lengths, dtype=np.int64)]), pa.py_buffer(data)])
            for lengths, data in parts]
  ids = pc.dictionary_encode(pa.concat_arrays(values)).indices.to_numpy(zero_copy_only=False)
  starts = np.cumsum([0] + [len(v) for v in values])
  return [ids[start:end].astype(np.int64) for start, end in zip(starts, starts[1:])]
