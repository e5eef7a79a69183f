"""EasyRec CSV reading, caching and malformed-row handling."""
import os
import time

import ml_collections
import numpy as np
import pyarrow as pa
import pytest

from mmoe_jax.data import columnar, csv_input, features

FIELDS = (('clk', 'INT32'), ('user', 'STRING'), ('tags', 'STRING'), ('price', 'FLOAT'),
          ('age', 'INT32'), ('score', 'DOUBLE'))
HEADER = 'clk,user,tags,price,age,score\n'
ROWS = ('1,u1,a|b,0.5,3,1.5\n'
        '0,,c,5,12,\n'
        '1,u1,,20,,-2\n')


def h(s, buckets=1000):
  return int(features.fnv1a_64([s])[0] % buckets)


def data_config(**overrides):
  config = dict(
      input_fields=tuple(ml_collections.ConfigDict(dict(input_name=n, input_type=t, default_val=''))
                         for n, t in FIELDS),
      label_fields=('clk',), separator=',', with_header=False, ignore_error=False,
      batch_size=2, shuffle=False)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def feature(name, feature_type='IdFeature', **overrides):
  fc = dict(feature_name=name, input_names=(name,), feature_type=feature_type, embedding_name='',
            embedding_dim=4, hash_bucket_size=0, num_buckets=0, vocab_list=(), boundaries=(),
            separator='|', combiner='sum', raw_input_dim=1)
  fc.update(overrides)
  return ml_collections.ConfigDict(fc)


def feature_configs(user_buckets=1000):
  return (feature('user', hash_bucket_size=user_buckets),
          feature('tags', 'TagFeature', vocab_list=('x', 'a', 'b', 'c')),
          feature('price', 'RawFeature', boundaries=(1.0, 5.0, 10.0)),
          feature('age', num_buckets=10),
          feature('score', 'RawFeature'))


def write(path, text):
  path.write_text(text)
  return str(path)


def load(paths, tmp_path, config=None, fcs=None, logs=None):
  return csv_input.load_csv(paths, config or data_config(), fcs or feature_configs(),
                            str(tmp_path / 'cache'), log=(logs.append if logs is not None else
                                                          lambda _: None))


def check_rows(data):
  """The three ROWS, transformed by hand."""
  assert data.num_rows == 3 and data.skipped_rows == 0
  f = data.features
  assert f['user'].tolist() == [h('u1'), -1, h('u1')]
  assert f['tags'].tolist() == [[1, 2], [3, -1], [-1, -1]]
  assert f['price'].tolist() == [0, 2, 3]
  assert f['age'].tolist() == [3, 0, 0]  # 12 >= num_buckets -> 0; an empty INT cell is 0
  np.testing.assert_array_equal(f['score'], np.float32([1.5, 0.0, -2.0]))
  assert data.labels['clk'].tolist() == [1.0, 0.0, 1.0]
  assert [f[k].dtype for k in ('user', 'tags', 'price', 'age', 'score')] == [
      np.int32, np.int32, np.int32, np.int32, np.float32]
  assert data.labels['clk'].dtype == np.float32


def test_load_transforms_every_feature(tmp_path):
  check_rows(load(write(tmp_path / 'a.csv', ROWS), tmp_path))


def test_header_is_skipped(tmp_path):
  path = write(tmp_path / 'a.csv', HEADER + ROWS)
  check_rows(load(path, tmp_path, data_config(with_header=True)))


def test_other_separator(tmp_path):
  path = write(tmp_path / 'a.tsv', ROWS.replace(',', '\t'))
  check_rows(load(path, tmp_path, data_config(separator='\t')))


def test_multiple_files_and_glob_order_with_tag_padding(tmp_path):
  (tmp_path / 'd').mkdir()
  write(tmp_path / 'd' / 'p2.csv', '0,u2,a|b|c,1,1,1\n')
  write(tmp_path / 'd' / 'p1.csv', '1,u1,a,1,1,1\n')
  extra = write(tmp_path / 'extra.csv', '0,u3,,1,1,1\n')
  data = load(f'{tmp_path}/d/*.csv,{extra}', tmp_path)
  assert data.num_rows == 3
  assert data.features['user'].tolist() == [h('u1'), h('u2'), h('u3')]
  assert data.features['tags'].tolist() == [[1, -1, -1], [1, 2, 3], [-1, -1, -1]]
  assert data.labels['clk'].tolist() == [1.0, 0.0, 0.0]


def test_missing_file_names_pattern(tmp_path):
  path = write(tmp_path / 'a.csv', ROWS)
  with pytest.raises(FileNotFoundError, match='nope/\\*.csv'):
    load(f'{path},{tmp_path}/nope/*.csv', tmp_path)


def test_cache_is_reused(tmp_path, monkeypatch):
  path = write(tmp_path / 'a.csv', ROWS)
  logs = []
  load(path, tmp_path, logs=logs)
  assert 'built cache' in logs[-1]

  def no_parse(*args):
    raise AssertionError('re-parsed a cached file')

  monkeypatch.setattr(csv_input, '_read_batches', no_parse)
  data = load(path, tmp_path, logs=logs)
  assert 'cache hit' in logs[-1]
  check_rows(data)


def test_cache_rebuilds_when_file_changes(tmp_path):
  path = write(tmp_path / 'a.csv', ROWS)
  load(path, tmp_path)
  write(tmp_path / 'a.csv', '0,u9,a,1,1,1\n')
  os.utime(path, ns=(1, 1))  # a distinct mtime even on coarse-clock file systems
  logs = []
  data = load(path, tmp_path, logs=logs)
  assert 'built cache' in logs[-1]
  assert data.num_rows == 1 and data.features['user'].tolist() == [h('u9')]


def test_cache_rebuilds_when_feature_config_changes(tmp_path):
  path = write(tmp_path / 'a.csv', ROWS)
  load(path, tmp_path)
  logs = []
  data = load(path, tmp_path, fcs=feature_configs(user_buckets=7), logs=logs)
  assert 'built cache' in logs[-1]
  assert data.features['user'].tolist() == [h('u1', 7), -1, h('u1', 7)]


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
  path = write(tmp_path / 'a.csv', ROWS)

  def fail(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(columnar, '_append', fail)
  with pytest.raises(KeyboardInterrupt):
    load(path, tmp_path)
  assert os.listdir(tmp_path / 'cache') == []
  monkeypatch.undo()
  check_rows(load(path, tmp_path))



def test_build_allocates_arrow_memory_from_jemalloc_or_the_c_heap(tmp_path, monkeypatch):
  # Not mimalloc's transparent huge pages, zeroed again for every record batch (columnar.py).
  pools = []
  read = csv_input._read_batches

  def record_pool(*args):
    pools.append(pa.default_memory_pool().backend_name)
    yield from read(*args)

  monkeypatch.setattr(csv_input, '_read_batches', record_pool)
  before = pa.default_memory_pool().backend_name
  check_rows(load(write(tmp_path / 'a.csv', ROWS), tmp_path))
  assert pools == [columnar.build_memory_pool().backend_name]
  assert pools[0] in ('jemalloc', 'system') and pa.default_memory_pool().backend_name == before
  # Two files build at once (columnar.load_files): one swap, undone after the last build.
  both = load(f"{write(tmp_path / 'b.csv', ROWS)},{write(tmp_path / 'c.csv', ROWS)}", tmp_path)
  assert both.num_rows == 6 and pools[1:] == pools[:1] * 2
  assert pa.default_memory_pool().backend_name == before


# Line 1 header, 2 ok, 3 blank, 4 ok, 5 bad, 6 ok: the bad row is data row 2.
def bad_file(tmp_path, bad_line):
  text = HEADER + '1,u1,a,1,1,1\n\n0,u2,b,2,2,2\n' + bad_line + '1,u3,c,3,3,3\n'
  return write(tmp_path / 'bad.csv', text)


@pytest.mark.parametrize('bad_line,message', [
    ('1,u1,a,1,1\n', 'bad.csv:5: expected 6 columns, got 5'),
    ('1,u1,a,1,1,1,1\n', 'bad.csv:5: expected 6 columns, got 7'),
    ('abc,u1,a,1,1,1\n', "bad.csv:5: column 'clk' (INT32): 'abc' is not an integer within INT32"),
    ('1,u1,a,1.x,1,1\n',
     "bad.csv:5: column 'price' (FLOAT): '1.x' is not a finite float32 number"),
    ('1,u1,a,1,2.5,1\n',
     "bad.csv:5: column 'age' (INT32, feature 'age'): '2.5' is not an integer within INT32"),
    # Numbers that parse but are not finite in float32 (the model's dtype).
    ('1,u1,a,1e39,1,1\n',
     "bad.csv:5: column 'price' (FLOAT): '1e39' is not a finite float32 number"),
    ('1,u1,a,1,1,nan\n',
     "bad.csv:5: column 'score' (DOUBLE): 'nan' is not a finite float32 number"),
    ('1,u1,a,1,1,-1e300\n',
     "bad.csv:5: column 'score' (DOUBLE): '-1e300' is not a finite float32 number"),
    ('1,u1,a,1,1,inf\n',
     "bad.csv:5: column 'score' (DOUBLE): 'inf' is not a finite float32 number"),
    ('1e39,u1,a,1,1,1\n', "bad.csv:5: column 'clk' (INT32): '1e39' is not an integer within INT32"),
])
def test_malformed_row_error_names_file_and_line(tmp_path, bad_line, message):
  path = bad_file(tmp_path, bad_line)
  with pytest.raises(ValueError) as e:
    load(path, tmp_path, data_config(with_header=True))
  assert str(e.value) == os.path.join(str(tmp_path), message)


def test_malformed_row_in_second_file(tmp_path):
  first = write(tmp_path / 'a.csv', ROWS)
  second = write(tmp_path / 'b.csv', '1,u1,a,1,1,1\n0,u1,a,1,1,zz\n')
  with pytest.raises(ValueError, match=r"b\.csv:2: column 'score' \(DOUBLE\): 'zz'"):
    load(f'{first},{second}', tmp_path)


def test_first_malformed_file_in_order_is_named(tmp_path, monkeypatch):
  # Files build two at a time; the error is the first failing file's in path order, even
  # when a later file fails first.
  slow = columnar.transform_batch

  def transform_batch(batch, *args):
    if batch.num_rows == 3:  # a.csv: let b.csv fail first
      time.sleep(0.5)
    return slow(batch, *args)

  monkeypatch.setattr(columnar, 'transform_batch', transform_batch)
  first = write(tmp_path / 'a.csv', ROWS.replace('0.5', 'x'))
  second = write(tmp_path / 'b.csv', '1,u1,a,1,1,zz\n')
  with pytest.raises(ValueError, match=r"a\.csv:1: column 'price' \(FLOAT\): 'x'"):
    load(f'{first},{second}', tmp_path)


def test_a_bad_file_stops_the_files_not_started(tmp_path, monkeypatch):
  # Two files build at a time: when the first fails, the files not started yet never are.
  started = []
  slow = columnar.transform_batch

  def transform_batch(batch, data_config, feature_configs, where, first_row=0):
    started.append(where(0))
    if batch.num_rows == 3:  # a good file
      time.sleep(0.3)
    return slow(batch, data_config, feature_configs, where, first_row)

  monkeypatch.setattr(columnar, 'transform_batch', transform_batch)
  paths = [write(tmp_path / 'a.csv', '1,u1,a,1,1,zz\n')]
  paths += [write(tmp_path / f'{c}.csv', ROWS) for c in 'bcdef']
  with pytest.raises(ValueError, match=r"a\.csv:1: column 'score'"):
    load(','.join(paths), tmp_path)
  # a and b start together; c may take a's thread before the rest are dropped.
  assert len(started) <= 3 and not any('e.csv' in w or 'f.csv' in w for w in started)


def test_ignore_error_skips_and_counts(tmp_path):
  text = ('1,u1,a,1,1,1\n'
          '1,u1,a,1,1\n'  # too few columns
          '\n'
          'x,u2,a,1,1,1\n'  # bad label
          '0,u3,b|c|a,1,1,1\n'
          '0,u4,a,1,q,1\n'  # bad num_buckets value
          '0,u5,a,1e39,1,1\n'  # inf in float32
          '0,u6,a,1,1,nan\n')
  path = write(tmp_path / 'a.csv', text)
  logs = []
  data = load(path, tmp_path, data_config(ignore_error=True), logs=logs)
  assert data.num_rows == 2 and data.skipped_rows == 5
  assert f'{path}: skipped 5 malformed rows (ignore_error)' in logs
  assert data.features['user'].tolist() == [h('u1'), h('u3')]
  assert data.features['tags'].tolist() == [[1, -1, -1], [2, 3, 1]]
  assert data.labels['clk'].tolist() == [1.0, 0.0]


def test_ignore_error_trims_tag_width_of_skipped_rows(tmp_path):
  path = write(tmp_path / 'a.csv', '1,u1,a,1,1,1\n1,u1,a|b|c,1,q,1\n')
  data = load(path, tmp_path, data_config(ignore_error=True))
  assert data.features['tags'].tolist() == [[1]]


def test_unknown_column(tmp_path):
  path = write(tmp_path / 'a.csv', ROWS)
  with pytest.raises(ValueError, match="feature 'f2': input column 'nope'"):
    load(path, tmp_path, fcs=feature_configs() + (feature('f2', input_names=('nope',),
                                                          hash_bucket_size=5),))
  with pytest.raises(ValueError, match="label field 'buy'"):
    load(path, tmp_path, data_config(label_fields=('clk', 'buy')))


def test_empty_file(tmp_path):
  data = load(write(tmp_path / 'a.csv', ''), tmp_path)
  assert data.num_rows == 0 and data.features['tags'].shape == (0, 1)


def test_take(tmp_path):
  data = load(write(tmp_path / 'a.csv', ROWS), tmp_path)
  batch = data.take(np.array([2, 0]))
  assert batch.num_rows == 2
  assert batch.features['user'].tolist() == [h('u1'), h('u1')]
  assert batch.features['tags'].tolist() == [[-1, -1], [1, 2]]
  assert batch.features['age'].tolist() == [0, 3]
  assert batch.labels['clk'].tolist() == [1.0, 1.0]


def test_bytes_are_hashed_as_is(tmp_path):
  # UTF-8 and invalid UTF-8 alike: ids come from the raw bytes, as TF hashes its byte strings.
  path = tmp_path / 'a.csv'
  path.write_bytes('1,é,a,1,1,1\n'.encode() + b'0,\xff,a,1,1,1\n')
  data = load(str(path), tmp_path)
  assert data.features['user'].tolist() == [
      h('é'), int(features.fnv1a_64(pa.array([b'\xff'], pa.binary()))[0] % 1000)]


def test_header_only_file(tmp_path):
  data = load(write(tmp_path / 'a.csv', HEADER), tmp_path, data_config(with_header=True))
  assert data.num_rows == 0 and data.labels['clk'].shape == (0,)


def test_block_by_block_matches_whole_file(tmp_path, monkeypatch):
  # Many small parse blocks: tag widths differ between blocks, and a bad row's line number
  # must count the rows of earlier blocks.
  lines = [f'{i % 2},u{i},{"|".join("abc"[:i % 4])},{i},{i % 12},{i / 2}\n' for i in range(60)]
  path = write(tmp_path / 'a.csv', ''.join(lines))
  whole = load(path, tmp_path)
  monkeypatch.setattr(csv_input, '_BLOCK_BYTES', 64)
  blocks = csv_input.load_csv(path, data_config(), feature_configs(), str(tmp_path / 'cache2'),
                              log=lambda _: None)
  assert whole.features['tags'].shape == (60, 3)
  for k in whole.features:
    np.testing.assert_array_equal(blocks.features[k], whole.features[k])
  np.testing.assert_array_equal(blocks.labels['clk'], whole.labels['clk'])

  lines[45] = lines[45].replace(f',{45 % 12},', ',x,')
  path = write(tmp_path / 'b.csv', ''.join(lines))
  with pytest.raises(ValueError, match=r"b\.csv:46: column 'age'"):
    csv_input.load_csv(path, data_config(), feature_configs(), str(tmp_path / 'cache3'),
                       log=lambda _: None)


def test_non_finite_label_is_an_error_or_skipped(tmp_path):
  fields = FIELDS + (('gmv', 'FLOAT'),)
  config = lambda **kw: data_config(
      input_fields=tuple(ml_collections.ConfigDict(dict(input_name=n, input_type=t,
                                                        default_val='')) for n, t in fields),
      label_fields=('clk', 'gmv'), **kw)
  path = write(tmp_path / 'a.csv', '1,u1,a,1,1,1,2.5\n0,u2,b,1,1,1,3e38\n0,u3,c,1,1,1,4e38\n')
  with pytest.raises(ValueError, match=r"a\.csv:3: column 'gmv' \(FLOAT\): '4e38' is not a "
                                       'finite float32 number'):
    load(path, tmp_path, config())
  data = load(path, tmp_path, config(ignore_error=True))
  assert data.skipped_rows == 1
  np.testing.assert_array_equal(data.labels['gmv'], np.float32([2.5, 3e38]))
