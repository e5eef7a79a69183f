"""EasyRec's ParquetInput: the same rows as a CSV file give the same cache and the same errors."""
import os

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax.config import load_config, validate
from mmoe_jax.data import csv_input, parquet_input
from test_csv_input import ROWS, check_rows, data_config, feature, feature_configs, h, write
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



def assert_same_cache(from_csv, from_parquet):
  """The same features and labels, keys, dtypes and values, from both inputs."""
  for kind in ('features', 'labels'):
    a, b = getattr(from_csv, kind), getattr(from_parquet, kind)
    assert list(a) == list(b)
    for k in a:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)

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
  assert_same_cache(from_csv, from_parquet)


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


# Typed columns with what the text path must reproduce: negative ints, nulls (an empty CSV
# cell), ints read as a STRING field's text, floats whose text differs from Python's ('20'),
# tags with empty tokens and another separator. Repeated, so that both inputs take the
# per-distinct-value path (features._distinct).
TYPED_FIELDS = (('clk', 'INT32'), ('uid', 'STRING'), ('item', 'INT64'), ('bucket', 'INT32'),
                ('price', 'FLOAT'), ('w', 'DOUBLE'), ('tags', 'STRING'))
TYPED = pa.table({
    'clk': pa.array([1, 0, None, 1, 0, 1], pa.int8()),
    'uid': pa.array([-5, 7, None, -5, 0, 12345678901]),
    'item': pa.array([3, -1, None, 3, 2**40, 7]),
    'bucket': pa.array([-1, 12, None, 3, 3, 0], pa.int32()),
    'price': pa.array([0.5, None, -2.25, 20.0, 5.0, 0.5]),
    'w': pa.array([1.5, None, -2.0, 3.0, 1e-3, 1.5], pa.float32()),
    'tags': pa.array(['a;b', None, '', ';c;;', 'a', 'a;b']),
})


def typed_configs():
  fields = tuple(ml_collections.ConfigDict(dict(input_name=n, input_type=t, default_val=''))
                 for n, t in TYPED_FIELDS)
  return data_config(input_fields=fields), (
      feature('uid', hash_bucket_size=1000), feature('item', hash_bucket_size=97),
      feature('bucket', num_buckets=10),
      feature('price', 'RawFeature', boundaries=(1.0, 5.0)), feature('w', 'RawFeature'),
      feature('tags', 'TagFeature', hash_bucket_size=100, separator=';'))


def csv_text(table):
  """The rows as CSV cells: Python's text of each value, '' for a null."""
  columns = [table[name].to_pylist() for name, _ in TYPED_FIELDS]
  return ''.join(','.join('' if v is None else str(v) for v in row) + '\n'
                 for row in zip(*columns))


def test_typed_parquet_columns_give_the_csv_cache(tmp_path):
  config, fcs = typed_configs()
  table = pa.concat_tables([TYPED] * 4)
  pq.write_table(table, tmp_path / 'a.parquet', row_group_size=10)  # several record batches
  from_parquet = parquet_input.load_parquet(str(tmp_path / 'a.parquet'), config, fcs,
                                            str(tmp_path / 'cache'), log=lambda _: None)
  from_csv = csv_input.load_csv(write(tmp_path / 'a.csv', csv_text(table)), config, fcs,
                                str(tmp_path / 'cache'), log=lambda _: None)
  assert_same_cache(from_csv, from_parquet)
  f = from_parquet.features
  # A null STRING cell is a missing id; a null INT cell reads 0, hashed as '0'.
  assert f['uid'][:6].tolist() == [h('-5'), h('7'), -1, h('-5'), h('0'), h('12345678901')]
  assert f['item'][:3].tolist() == [h('3', 97), h('-1', 97), h('0', 97)]
  assert f['bucket'][:6].tolist() == [-1, 0, 0, 3, 3, 0]
  assert f['price'][:6].tolist() == [0, 0, 0, 2, 2, 0]
  np.testing.assert_array_equal(f['w'][:6], np.float32([1.5, 0, -2, 3, 1e-3, 1.5]))
  assert f['tags'][:6].tolist() == [[h('a', 100), h('b', 100)], [-1, -1], [-1, -1],
                                    [h('c', 100), -1], [h('a', 100), -1],
                                    [h('a', 100), h('b', 100)]]
  assert from_parquet.labels['clk'][:6].tolist() == [1, 0, 0, 1, 0, 1]


def test_typed_value_out_of_its_field_range_names_row_and_line(tmp_path):
  config, fcs = typed_configs()
  table = pa.concat_tables([TYPED] * 4)
  bucket = table['bucket'].to_pylist()
  bucket[18] = 2**40
  table = table.set_column(3, pa.field('bucket', pa.int64()), pa.array(bucket, pa.int64()))
  pq.write_table(table, tmp_path / 'a.parquet')
  message = ("column 'bucket' (INT32, feature 'bucket'): '1099511627776' is not an integer "
             'within INT32')
  with pytest.raises(ValueError) as e:
    parquet_input.load_parquet(str(tmp_path / 'a.parquet'), config, fcs,
                               str(tmp_path / 'cache'), log=lambda _: None)
  assert str(e.value) == f"{tmp_path / 'a.parquet'}: row 19: {message}"
  path = write(tmp_path / 'a.csv', csv_text(table))
  with pytest.raises(ValueError) as e:
    csv_input.load_csv(path, config, fcs, str(tmp_path / 'cache'), log=lambda _: None)
  assert str(e.value) == f'{path}:19: {message}'


def test_batch_uses_only_its_rows_of_parquets_dictionary(tmp_path, monkeypatch):
  """Record batches of one row group share Parquet's dictionary of a string column; a tag list
  only a skipped row holds must not widen the other batches' tags."""
  config, fcs = typed_configs()
  config.ignore_error = True
  table = pa.concat_tables([TYPED] * 4)
  tags, bucket = table['tags'].to_pylist(), table['bucket'].to_pylist()
  tags[18], bucket[18] = 'a;b;c;d;e', 2**40  # the longest list, in a row skipped as bad
  table = table.set_column(6, 'tags', pa.array(tags)).set_column(
      3, pa.field('bucket', pa.int64()), pa.array(bucket, pa.int64()))
  pq.write_table(table, tmp_path / 'a.parquet')  # one row group
  monkeypatch.setattr(parquet_input, '_BATCH_ROWS', 5)
  from_parquet = parquet_input.load_parquet(str(tmp_path / 'a.parquet'), config, fcs,
                                            str(tmp_path / 'cache'), log=lambda _: None)
  from_csv = csv_input.load_csv(write(tmp_path / 'a.csv', csv_text(table)), config, fcs,
                                str(tmp_path / 'cache'), log=lambda _: None)
  assert from_parquet.skipped_rows == from_csv.skipped_rows == 1
  assert from_parquet.features['tags'].shape == (23, 2)
  for k in from_csv.features:
    np.testing.assert_array_equal(from_parquet.features[k], from_csv.features[k], err_msg=k)


def test_dense_integer_columns_give_the_csv_cache(tmp_path, monkeypatch):
  """Integer columns without nulls whose values span a range no longer than the batch skip
  hashing (_dense_range: from 0, the column is its own index; else offsets from its least
  value, in int64 for int8 and in uint64 for uint64); the cache is the CSV one. A column a
  TagFeature reads keeps the hashing path: with separator '0', the unused value 101 of the
  range 0..150 would have two tags where every used value has one."""
  n = 300
  i = np.arange(n)
  fields = (('clk', 'INT32'), ('level', 'INT64'), ('neg', 'INT32'), ('big', 'STRING'),
            ('digits', 'STRING'))
  table = pa.table({
      'clk': pa.array(i % 2, pa.int8()),
      'level': pa.array(i % 7 * 3, pa.int64()),
      'neg': pa.array(i % 256 - 128, pa.int8()),
      'big': pa.array(np.uint64(2**64 - 1) - (i % 5).astype(np.uint64), pa.uint64()),
      'digits': pa.array(np.where(i % 2, 5, 150), pa.int64()),
  })
  config = data_config(input_fields=tuple(ml_collections.ConfigDict(dict(
      input_name=c, input_type=t, default_val='')) for c, t in fields))
  fcs = (feature('level', hash_bucket_size=50), feature('neg', num_buckets=100),
         feature('big', hash_bucket_size=1000),
         feature('digits', 'TagFeature', hash_bucket_size=100, separator='0'))
  dense = []
  dense_range = parquet_input._dense_range
  monkeypatch.setattr(parquet_input, '_dense_range',
                      lambda column: dense.append(column.type) or dense_range(column))
  pq.write_table(table, tmp_path / 'a.parquet')
  from_parquet = parquet_input.load_parquet(str(tmp_path / 'a.parquet'), config, fcs,
                                            str(tmp_path / 'cache'), log=lambda _: None)
  assert dense == [pa.int8(), pa.int64(), pa.int8(), pa.uint64()]  # not 'digits'
  text = ''.join(','.join(str(table[c][r].as_py()) for c, _ in fields) + '\n' for r in range(n))
  from_csv = csv_input.load_csv(write(tmp_path / 'a.csv', text), config, fcs,
                                str(tmp_path / 'cache'), log=lambda _: None)
  assert_same_cache(from_csv, from_parquet)
  f = from_parquet.features
  assert f['level'][:3].tolist() == [h('0', 50), h('3', 50), h('6', 50)]
  # -2, -1, 0, 1, 2: out of range -> 0, -1 is a missing id, the rest themselves
  assert f['neg'][126:131].tolist() == [0, -1, 0, 1, 2]
  assert f['big'][:2].tolist() == [h(str(2**64 - 1)), h(str(2**64 - 2))]
  assert f['digits'].shape == (n, 1)
