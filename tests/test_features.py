"""Feature transforms against hand-computed values and a pure-Python FNV-1a reference."""
import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmoe_jax.data import features


def fnv1a_64_reference(s: str) -> int:
  h = 0xCBF29CE484222325
  for byte in s.encode('utf-8'):
    h = ((h ^ byte) * 0x100000001B3) % 2**64
  return h


def feature(**overrides):
  fc = dict(feature_name='f', input_names=('f',), feature_type='IdFeature', embedding_name='',
            embedding_dim=4, hash_bucket_size=0, num_buckets=0, vocab_list=(), boundaries=(),
            separator='|', combiner='sum', raw_input_dim=1)
  fc.update(overrides)
  return ml_collections.ConfigDict(fc)


def field(input_type='STRING', default_val=''):
  return ml_collections.ConfigDict(dict(input_name='f', input_type=input_type,
                                        default_val=default_val))


def test_fnv1a_64_matches_reference():
  values = ['', 'a', 'foobar', '430548_1007', 'héllo', '中文标签', 'x' * 300, 'ab', 'b']
  got = features.fnv1a_64(values)
  assert got.dtype == np.uint64
  assert got.tolist() == [fnv1a_64_reference(v) for v in values]
  # Published FNV-1a 64 test vectors, so the reference itself is checked too.
  assert got[0] == 0xCBF29CE484222325 and got[1] == 0xAF63DC4C8601EC8C
  assert got[2] == 0x85944171F73967E8


def test_fnv1a_64_accepts_numpy_and_chunked_arrays():
  values = ['7', '12', '', '12345']
  want = [fnv1a_64_reference(v) for v in values]
  assert features.fnv1a_64(np.array(values)).tolist() == want
  chunked = pa.chunked_array([pa.array(values[:1]), pa.array(values[1:])])
  assert features.fnv1a_64(chunked).tolist() == want
  assert features.fnv1a_64(pa.array(values).slice(1)).tolist() == want[1:]
  assert features.fnv1a_64([]).shape == (0,)


def test_id_hash_bucket():
  ids, bad = features.transform_feature(pa.array(['a', '', 'foobar', 'a']),
                                        feature(hash_bucket_size=1000), field())
  assert ids.dtype == np.int32 and bad is None
  a, foobar = fnv1a_64_reference('a') % 1000, fnv1a_64_reference('foobar') % 1000
  assert ids.tolist() == [a, -1, foobar, a]


def test_id_default_val_fills_empty_before_hashing():
  ids, _ = features.transform_feature(pa.array(['', 'b']), feature(hash_bucket_size=97),
                                      field(default_val='a'))
  assert ids.tolist() == [fnv1a_64_reference('a') % 97, fnv1a_64_reference('b') % 97]


def test_id_num_buckets_int_field_minus_one_is_missing_empty_is_zero():
  # EasyRec: decode_csv fills an empty INT cell with 0 (no default_val); TF's identity column
  # drops -1 from a dense column (missing: zero vector) and maps other out-of-range ids to 0.
  values = ['3', '0', '49', '50', '-1', '', '007', '+5', '-7', '2147483647']
  ids, bad = features.transform_feature(pa.array(values), feature(num_buckets=50),
                                        field('INT32'))
  assert ids.tolist() == [3, 0, 49, 0, -1, 0, 7, 5, 0, 0]
  assert bad is None
  ids, _ = features.transform_feature(pa.array(['', '1']), feature(num_buckets=50),
                                      field('INT64', default_val='4'))
  assert ids.tolist() == [4, 1]
  ids, _ = features.transform_feature(pa.array(['', '1']), feature(num_buckets=50),
                                      field('INT32', default_val='-1'))
  assert ids.tolist() == [-1, 1]


def test_id_num_buckets_flags_non_integers():
  ids, bad = features.transform_feature(pa.array(['1', 'x', '2.5', '']), feature(num_buckets=5),
                                        field('INT32'))
  assert bad.tolist() == [False, True, True, False]
  assert ids[0] == 1 and ids[3] == 0


def test_int_fields_parse_within_their_type():
  # decode_csv fails on an INT32 value outside int32; INT64 holds up to 2**63 - 1.
  values = ['2147483647', '2147483648', '-2147483648', '-2147483649', '9223372036854775807',
            '9223372036854775808', '99999999999999999999']
  _, bad = features.transform_feature(pa.array(values), feature(num_buckets=10), field('INT32'))
  assert bad.tolist() == [False, True, False, True, True, True, True]
  ids, bad = features.transform_feature(pa.array(values), feature(num_buckets=10),
                                        field('INT64'))
  assert bad.tolist() == [False] * 5 + [True, True]
  assert ids[:5].tolist() == [0] * 5  # out of range -> 0


def test_id_hash_of_int_field_hashes_the_integer_text():
  # EasyRec: tf.as_string of the parsed integer, then hashed; -1 is an id, not missing, and
  # an empty cell is 0 (or default_val).
  h = lambda s: fnv1a_64_reference(s) % 1000
  ids, bad = features.transform_feature(pa.array(['7', '007', '-1', '', '+7']),
                                        feature(hash_bucket_size=1000), field('INT64'))
  assert ids.tolist() == [h('7'), h('7'), h('-1'), h('0'), h('7')] and bad is None
  ids, _ = features.transform_feature(pa.array(['', '5']), feature(hash_bucket_size=1000),
                                      field('INT32', default_val='3'))
  assert ids.tolist() == [h('3'), h('5')]


def test_id_num_buckets_string_field():
  # EasyRec: string_to_number(int32) (fails on ''), then the identity column as for INT.
  ids, bad = features.transform_feature(pa.array(['3', '-1', '-5', '', '60', 'a']),
                                        feature(num_buckets=50), field())
  assert bad.tolist() == [False, False, False, True, False, True]
  assert ids[[0, 1, 2, 4]].tolist() == [3, -1, 0, 0]
  ids, bad = features.transform_feature(pa.array(['', '7']), feature(num_buckets=50),
                                        field(default_val='2'))
  assert ids.tolist() == [2, 7] and bad is None


def test_id_vocab_list_oov_maps_to_zero():
  ids, bad = features.transform_feature(pa.array(['b', 'zz', '', 'a', 'c']),
                                        feature(vocab_list=('a', 'b', 'c')), field())
  assert ids.tolist() == [1, 0, -1, 0, 2] and bad is None


def test_tags_split_drop_empty_and_pad():
  fc = feature(feature_type='TagFeature', vocab_list=('x', 'a', 'b', 'c', 'd'))
  tags, bad = features.transform_feature(pa.array(['a|b', '', 'c||d|', '|', 'zz|a|b']), fc,
                                         field())
  assert tags.dtype == np.int32 and bad is None
  assert tags.tolist() == [[1, 2, -1], [-1, -1, -1], [3, 4, -1], [-1, -1, -1], [0, 1, 2]]


def test_tags_hash_with_other_separator():
  fc = feature(feature_type='TagFeature', hash_bucket_size=100, separator=';')
  tags, _ = features.transform_feature(pa.array(['k1;k2', 'k3|k4']), fc, field())
  h = lambda s: fnv1a_64_reference(s) % 100
  assert tags.tolist() == [[h('k1'), h('k2')], [h('k3|k4'), -1]]


def test_tags_all_empty_have_width_one():
  fc = feature(feature_type='TagFeature', hash_bucket_size=10)
  tags, _ = features.transform_feature(pa.array(['', '|', '']), fc, field())
  assert tags.shape == (3, 1) and (tags == -1).all()


def test_tags_num_buckets_bad_token_flags_row():
  fc = feature(feature_type='TagFeature', num_buckets=10)
  tags, bad = features.transform_feature(pa.array(['1|2', '3|x', '12']), fc, field())
  assert bad.tolist() == [False, True, False]
  assert tags[0].tolist() == [1, 2] and tags[2].tolist() == [0, -1]


def test_tags_num_buckets_minus_one_is_out_of_range():
  # Tags reach TF's identity column as a SparseTensor, which it takes as is: a -1 token is
  # out of range -> 0, unlike a dense IdFeature cell. Empty tokens and cells are dropped.
  fc = feature(feature_type='TagFeature', num_buckets=10)
  tags, bad = features.transform_feature(pa.array(['1|-1|60|', '', '|4']), fc, field())
  assert bad is None
  assert tags.tolist() == [[1, 0, 0], [-1, -1, -1], [4, -1, -1]]


def test_raw_boundaries_bucketize_like_tf():
  fc = feature(feature_type='RawFeature', boundaries=(1.0, 5.0, 10.0))
  values = ['0.5', '1', '1.5', '5', '10', '12', '', '-3']
  ids, bad = features.transform_feature(pa.array(values), fc, field('FLOAT'))
  # A value equal to a boundary goes to the bucket on its right; empty -> 0 -> bucket 0.
  assert ids.dtype == np.int32 and bad is None
  assert ids.tolist() == [0, 1, 1, 2, 3, 3, 0, 0]
  ids, _ = features.transform_feature(pa.array(['']), fc, field('FLOAT', default_val='7'))
  assert ids.tolist() == [2]


def test_raw_dense_value_and_default():
  fc = feature(feature_type='RawFeature')
  vals, bad = features.transform_feature(pa.array(['1.5', '', '-2e3', '.25']), fc,
                                         field('DOUBLE'))
  assert vals.dtype == np.float32 and bad is None
  np.testing.assert_array_equal(vals, np.float32([1.5, 0.0, -2000.0, 0.25]))
  vals, _ = features.transform_feature(pa.array(['', '3']), fc, field('FLOAT', default_val='0.5'))
  np.testing.assert_array_equal(vals, np.float32([0.5, 3.0]))


def test_raw_vector_splits_into_raw_input_dim_values():
  fc = feature(feature_type='RawFeature', raw_input_dim=3, separator='|')
  column = pa.chunked_array([['1|2|3', '0.5|-1|2e1'], ['4|5', '1|x|3', '7|8|9']])
  vals, bad = features.transform_feature(column, fc, field('FLOAT'))
  assert vals.dtype == np.float32 and vals.shape == (5, 3)
  np.testing.assert_array_equal(vals[[0, 1, 4]], np.float32([[1, 2, 3], [0.5, -1, 20], [7, 8, 9]]))
  assert bad.tolist() == [False, False, True, True, False]  # 2 values; a non-number


def test_raw_flags_non_numbers_and_non_integers_in_int_fields():
  fc = feature(feature_type='RawFeature')
  _, bad = features.transform_feature(pa.array(['1', 'abc', '2.5']), fc, field('FLOAT'))
  assert bad.tolist() == [False, True, False]
  _, bad = features.transform_feature(pa.array(['1', 'abc', '2.5']), fc, field('INT32'))
  assert bad.tolist() == [False, True, True]


def test_label_parse_and_default():
  labels, bad = features.transform_label(pa.array(['1', '0', '']), field('INT32'))
  assert labels.dtype == np.float32 and bad is None
  assert labels.tolist() == [1.0, 0.0, 0.0]
  labels, _ = features.transform_label(pa.array(['0', '']), field('FLOAT', default_val='1'))
  assert labels.tolist() == [0.0, 1.0]


def test_non_numeric_default_val_raises():
  with pytest.raises(ValueError, match="default_val 'n/a'"):
    features.transform_label(pa.array(['1']), field('INT32', default_val='n/a'))


@pytest.mark.parametrize('input_type', ['FLOAT', 'DOUBLE'])
def test_non_finite_numbers_are_bad(input_type):
  # 1e39 overflows float32 (the model's dtype) to inf; TF would also parse 'nan' and 'inf'.
  values = ['1e39', '-1e39', '3.4e38', 'nan', 'inf', '-Infinity', '1', '']
  want = [True, True, False, True, True, True, False, False]
  _, bad = features.transform_feature(pa.array(values), feature(feature_type='RawFeature'),
                                      field(input_type))
  assert bad.tolist() == want
  _, bad = features.transform_feature(
      pa.array(values), feature(feature_type='RawFeature', boundaries=(0.0, 1.0)),
      field(input_type))
  assert bad.tolist() == want
  labels, bad = features.transform_label(pa.array(values), field(input_type))
  assert bad.tolist() == want and labels[6] == 1 and labels[7] == 0


def test_string_label_needs_a_number_or_default_val():
  # EasyRec: string_to_number on a STRING label fails on ''.
  labels, bad = features.transform_label(pa.array(['1', '']), field())
  assert bad.tolist() == [False, True]
  labels, bad = features.transform_label(pa.array(['1', '']), field(default_val='0'))
  assert bad is None and labels.tolist() == [1, 0]


# One column per kind of transform, with what makes each one differ: '', default_val,
# negative and zero-padded ints, out-of-range and bad values, tags with empty tokens.
DISTINCT_CASES = [
    (feature(hash_bucket_size=1000), field(), ['a', '', 'foobar', '中文']),
    (feature(hash_bucket_size=97), field(default_val='d'), ['a', '', 'b']),
    (feature(hash_bucket_size=97), field('INT64'), ['-1', '007', '', '+5', 'x', '9' * 20]),
    (feature(num_buckets=10), field('INT32'), ['-1', '3', '12', '', '-7', '2.5']),
    (feature(num_buckets=10), field(), ['-1', '3', '', 'x']),
    (feature(vocab_list=('a', 'b')), field(), ['b', 'zz', '']),
    (feature(feature_type='TagFeature', hash_bucket_size=100, separator=';'), field(),
     ['k1;k2', '', ';k3;;', 'k1|k2']),
    (feature(feature_type='TagFeature', num_buckets=10), field(), ['1|-1|60|', '', '3|x']),
    (feature(feature_type='RawFeature', boundaries=(1.0, 5.0)), field('FLOAT'),
     ['0.5', '5', '', '-3', 'nan']),
    (feature(feature_type='RawFeature'), field('DOUBLE', default_val='0.5'),
     ['1.5', '', '-2e3', '1e39']),
    (feature(feature_type='RawFeature', raw_input_dim=2), field('FLOAT'), ['1|2', '3', '1|x']),
    (None, field('INT32'), ['1', '0', '', '2.5']),  # a label
]


@pytest.mark.parametrize('fc,fld,values', DISTINCT_CASES)
def test_repeated_values_transform_once_per_distinct_value_as_each_value(
    monkeypatch, fc, fld, values):
  """A column whose values repeat goes through its distinct values (a dictionary, as
  ParquetInput's typed columns arrive too) and gives what every value on its own gives."""
  transform = (lambda c: features.transform_label(c, fld)) if fc is None else (
      lambda c: features.transform_feature(c, fc, fld))
  column = pa.array(values * 4, pa.string())
  assert features._distinct(column) is not None
  got, got_bad = transform(column)
  got_dict = transform(pa.chunked_array([pc.dictionary_encode(column, null_encoding='encode')]))
  monkeypatch.setattr(features, '_distinct', lambda chunk: None)
  want, want_bad = transform(pa.array(values, pa.string()))
  reps = (4,) + (1,) * (want.ndim - 1)
  for values_, bad in (got, got_bad), got_dict:
    assert values_.dtype == want.dtype
    np.testing.assert_array_equal(values_, np.tile(want, reps))
    assert (bad is None) == (want_bad is None)
    if bad is not None:
      np.testing.assert_array_equal(bad, np.tile(want_bad, 4))


def test_mostly_distinct_values_are_transformed_as_they_are():
  # Encoding a column of nearly all distinct values costs more than it saves.
  assert features._distinct(pa.array([str(i) for i in range(100)])) is None
  assert features._distinct(pa.array(['a', 'a', 'b'])) is None  # 2 of 3 distinct
  assert features._distinct(pa.array(['a', 'a', 'b', 'b'])) is not None
