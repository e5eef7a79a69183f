"""EasyRec's ParquetInput: the same rows as a CSV file give the same cache and the same errors."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax.config import load_config, validate
from mmoe_jax.data import parquet_input
from test_csv_input import ROWS, check_rows, data_config, feature_configs, write
from test_easyrec_config import pipeline

# ROWS as typed Parquet columns: ints, floats, strings, and nulls where the CSV cell is empty,
# plus a column no input field names (never read).
TABLE = pa.table({
    'unused': pa.array([[1], [2], [3]]),
    'score': pa.array([1.5, None, -2.0]),
    'clk': pa.array([1, 0, 1], pa.int32()),
    'user': pa.array(['u1', None, 'u1']),
    'tags': pa.array(['a|b', 'c', '']),
    'price': pa.array([0.5, 5.0, 20.0]),
    'age': pa.array([3, 12, None], pa.int64()),
})


def load(paths, tmp_path, config=None, logs=None):
  return parquet_input.load_parquet(paths, config or data_config(), feature_configs(),
                                    str(tmp_path / 'cache'),
                                    log=logs.append if logs is not None else lambda _: None)


def test_easyrec_config_with_parquet_input_validates(tmp_path):
  config = validate(load_config(pipeline(tmp_path, INPUT_TYPE='ParquetInput')))
  assert config.data_config.input_type == 'ParquetInput'


def test_parquet_rows_transform_as_csv_cells(tmp_path):
  pq.write_table(TABLE, tmp_path / 'a.parquet')
  check_rows(load(str(tmp_path / 'a.parquet'), tmp_path))


def test_parquet_and_csv_of_the_same_rows_give_identical_caches(tmp_path, tiny_config):
  """... and the same columns read beside the cache: a sample weight, a task-space mask and
  gauc's group codes."""
  tiny_config.data_config.sample_weight = 'price'
  towers = tiny_config.model_config.mmoe.task_towers
  towers[1].task_space_indicator_name, towers[1].task_space_indicator_value = 'pid', '430548_1007'
  towers[0].metrics_set = (*towers[0].metrics_set, {'gauc': {'uid_field': 'user_id'}})
  config = validate(tiny_config)
  csv_path = data_lib.input_paths(config)[1]
  names = [f.input_name for f in config.data_config.input_fields]
  # Typed columns, as a user's Parquet export would have them (ints, floats, strings).
  table = pacsv.read_csv(csv_path, read_options=pacsv.ReadOptions(column_names=names))
  assert {pa.types.is_integer(t) for t in table.schema.types} == {True, False}
  parquet_path = str(tmp_path / 'eval.parquet')
  pq.write_table(table, parquet_path, row_group_size=100)  # several record batches
  from_csv = data_lib.load(csv_path, config, groups=True)
  config.data_config.input_type = 'ParquetInput'
  from_parquet = data_lib.load(parquet_path, validate(config), groups=True)
  assert {'@sample_weight', '@pid==430548_1007'} <= set(from_csv.labels), list(from_csv.labels)
  assert from_csv.labels['@pid==430548_1007'].any()
  np.testing.assert_array_equal(from_parquet.groups['user_id'], from_csv.groups['user_id'])
  assert from_parquet.num_rows == from_csv.num_rows == table.num_rows
  for kind in ('features', 'labels'):
    a, b = getattr(from_csv, kind), getattr(from_parquet, kind)
    assert list(a) == list(b)
    for k in a:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_glob_of_parquet_files_keeps_sorted_order(tmp_path):
  (tmp_path / 'd').mkdir()
  pq.write_table(TABLE.slice(2), tmp_path / 'd' / 'part-1.parquet')
  pq.write_table(TABLE.slice(0, 2), tmp_path / 'd' / 'part-0.parquet')
  check_rows(load(f'{tmp_path}/d/*.parquet', tmp_path))


def test_bad_value_names_file_and_row(tmp_path):
  table = TABLE.set_column(TABLE.schema.get_field_index('price'), 'price',
                           pa.array(['0.5', '5', '1.x']))
  pq.write_table(table, tmp_path / 'a.parquet')
  path = str(tmp_path / 'a.parquet')
  with pytest.raises(ValueError) as e:
    load(path, tmp_path)
  assert str(e.value) == (f"{path}: row 3: column 'price' (FLOAT): '1.x' is not a finite "
                          'float32 number')
  logs = []
  data = load(path, tmp_path, data_config(ignore_error=True), logs=logs)
  assert data.num_rows == 2 and data.skipped_rows == 1
  assert f'{path}: skipped 1 malformed rows (ignore_error)' in logs


def test_missing_and_nested_columns_are_named(tmp_path):
  pq.write_table(TABLE.drop(['age']), tmp_path / 'a.parquet')
  with pytest.raises(ValueError, match=r"a\.parquet: no column 'age' \(data_config.input_fields\)"):
    load(str(tmp_path / 'a.parquet'), tmp_path)
  table = TABLE.set_column(TABLE.schema.get_field_index('tags'), 'tags',
                           pa.array([['a', 'b'], ['c'], []]))
  pq.write_table(table, tmp_path / 'b.parquet')
  with pytest.raises(ValueError, match=r"b\.parquet: column 'tags' is list<element: string>; "
                                       'ParquetInput reads scalar columns'):
    load(str(tmp_path / 'b.parquet'), tmp_path)


def test_not_a_parquet_file(tmp_path):
  path = write(tmp_path / 'a.parquet', ROWS)
  with pytest.raises(ValueError, match=r'a\.parquet: not a Parquet file'):
    load(path, tmp_path)
  assert os.listdir(tmp_path / 'cache') == []
