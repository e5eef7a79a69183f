"""Group codes of eval rows, for metrics computed per group (gauc, session_auc).

EasyRec groups rows by the raw value of an input field (a user id, a session id), not by
its hashed embedding id, whose buckets collide. The field need not feed any feature, so it
is not in the columnar cache: `with_groups` reads the raw column once more from the eval
CSV or Parquet files (as bytes, parsed as the cache's rows are) and codes each distinct value as a
dense int32 (pyarrow dictionary_encode). Values are compared as their text in the file.
"""

import dataclasses

import numpy as np
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
  value k: group_values, which file_shard's evaluation merges over processes, shared_codes);
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
    coded = pc.dictionary_encode(cells.combine_chunks())
    groups[field] = np.asarray(coded.indices.to_numpy(zero_copy_only=False), np.int32)
    values[field] = coded.dictionary
  return dataclasses.replace(columns, groups={**columns.groups, **groups},
                            group_values={**columns.group_values, **values})
