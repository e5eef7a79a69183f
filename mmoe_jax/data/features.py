"""Vectorized feature transforms: one CSV string column -> one model-ready numpy array.

Output conventions (the model relies on them exactly):
  IdFeature   -> int32 [N]; -1 is a missing id, which the model turns into a zero embedding.
  TagFeature  -> int32 [N, L]: one id per non-empty token, packed left and padded with -1,
                 L = max token count (at least 1).
  RawFeature  -> with boundaries: int32 bucket index (TF bucketized_column); without: float32
                 [N], or [N, raw_input_dim] when raw_input_dim > 1 (values split on separator).
  Labels      -> float32 [N].

Missing values and ids, as EasyRec (input/csv_input.py, input/input.py, and TF's feature
columns in compat/feature_column/feature_column_v2.py):
  - An empty cell first takes the field's default_val; without one, an INT or FLOAT field
    reads 0 and a STRING field stays '' (decode_csv record defaults, get_type_defaults).
  - hash_bucket_size: fnv1a_64(text) % size (TF uses its own fingerprint hash). An INT
    field is hashed as the integer's decimal text ('007' -> '7'), so -1 is an id like any
    other. In a STRING field '' is missing.
  - vocab_list (STRING fields only): the list index, out of vocabulary -> 0; '' is missing.
  - num_buckets: the integer (a STRING field's text must be one, '' included, as EasyRec's
    string_to_number); -1 is missing; any other value outside [0, num_buckets) -> 0.
  - TagFeature (STRING fields only): empty tokens are dropped; a token's id follows the same
    rules, except that a tag -1 is out of range like any other (TF drops -1 from dense
    columns only) -> 0.
  - A value that is not a number (an integer, in range, for INT fields; 'nan' and 'inf' are
    not numbers) or not finite in float32 (1e39) makes its row bad.

Every transform is row-wise, so a column whose values repeat (ids, tags, labels; any typed
Parquet column) is transformed once per distinct value and gathered back by index (see
_distinct); within a transform, parsing (regex check + cast) also runs on the unique values.
Each transform returns (values, bad), where `bad` is a bool [N] mask of rows holding a bad
value (None when there are none); the caller decides to raise or skip (data_config.ignore_error).
"""
import functools
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

_INT_RE = r'^[+-]?\d+$'
_FLOAT_RE = r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$'
# EasyRec's CSV decoding rejects '1.5' in an INT column, so integer types parse strictly.
INT_TYPES = ('INT32', 'INT64')


def _as_array(values) -> pa.Array:
  """One contiguous pa.string() array (one data buffer, one dictionary)."""
  if isinstance(values, pa.ChunkedArray):
    values = values.combine_chunks()
  elif not isinstance(values, pa.Array):
    values = pa.array(list(values), pa.string())
  if values.type == pa.binary():
    # The CSV reader hands over bytes; reinterpret without UTF-8 validation (TF hashes bytes too).
    values = values.view(pa.string())
  elif values.type != pa.string():
    values = values.cast(pa.string())
  return values


def _offsets_and_bytes(arr: pa.Array):
  """Start offsets, lengths (int32 [n]) and the UTF-8 data buffer of a string array, no copy."""
  _, obuf, dbuf = arr.buffers()
  offsets = np.frombuffer(obuf, np.int32, count=len(arr) + 1, offset=arr.offset * 4)
  data = np.frombuffer(dbuf, np.uint8) if dbuf is not None else np.zeros(0, np.uint8)
  return offsets[:-1], np.diff(offsets), data


def fnv1a_64(values) -> np.ndarray:
  """FNV-1a 64-bit hash of each string's UTF-8 bytes.

  Args:
    values: list[str], np.ndarray of str, or a pyarrow string array.
  Returns:
    np.uint64 [n].
  """
  h, order = _fnv1a_64_sorted(*_offsets_and_bytes(_as_array(values)))
  out = np.empty_like(h)
  out[order] = h
  return out


def _fnv1a_64_sorted(starts, lengths, data):
  """FNV-1a 64 of the byte strings data[starts[i]:starts[i] + lengths[i]], in a permuted order:
  (hashes [n], order [n]) with hashes[i] the hash of string order[i]. Callers scatter back after
  their own elementwise work, which saves a full-size copy."""
  n = len(starts)
  if n == 0:
    return np.zeros(0, np.uint64), np.zeros(0, np.intp)
  # Longest first, so at byte position j the strings still being hashed are a prefix h[:k]:
  # one gather + xor + multiply per byte position, total work = total bytes, and no padded
  # [n, max_len] matrix (one long value would make that huge). A uint16 key makes numpy's
  # stable argsort a radix sort, O(n).
  max_len = int(lengths.max())
  key = (max_len - lengths).astype(np.uint16 if max_len < 1 << 16 else np.int64)
  order = np.argsort(key, kind='stable')
  pos = starts[order].astype(np.intp)  # the next byte of each string
  active = n - np.cumsum(np.bincount(lengths, minlength=max_len))[:max_len]  # [j]: # longer than j
  h = np.full(n, _FNV_OFFSET, np.uint64)
  byte = np.empty(n, np.uint8)
  for k in active:
    hk, bk, pk = h[:k], byte[:k], pos[:k]
    np.take(data, pk, out=bk)
    hk ^= bk
    hk *= _FNV_PRIME  # uint64 arrays wrap mod 2**64, which is what FNV wants
    pk += 1
  return h, order


def _encode(column):
  """(indices int32 [N] into uniques, uniques pa.StringArray)."""
  enc = pc.dictionary_encode(_as_array(column))
  return enc.indices.to_numpy(zero_copy_only=False), _as_array(enc.dictionary)


def _fill_empty(arr: pa.Array, default_val: str) -> pa.Array:
  if not default_val:
    return arr
  return pc.if_else(pc.equal(arr, ''), default_val, arr)


def _cell_default(field) -> str:
  """What an empty cell of the field reads as: EasyRec's CSV record default (input_utils
  get_type_defaults), default_val, else 0 for a number field and '' for a STRING one."""
  if field.input_type == 'STRING':
    return field.default_val
  default = field.default_val or '0'
  pattern = _INT_RE if field.input_type in INT_TYPES else _FLOAT_RE
  if not re.fullmatch(pattern, default):
    raise ValueError(f"input field '{field.input_name}' ({field.input_type}): "
                     f"default_val {field.default_val!r} is not "
                     f"{'an integer' if field.input_type in INT_TYPES else 'a number'}")
  return default


# The range each integer parse accepts: decode_csv for INT32 / INT64 fields, and
# string_to_number(int32) for the ids of a STRING field.
_INT_BITS = {'INT32': 31, 'INT64': 63, 'STRING': 31}


def _int_values(uniques: pa.Array, input_type: str):
  """Parses distinct values as integers: (int64 [U], bad [U]); bad: not an integer, or outside
  the range of `input_type` (_INT_BITS). Bad values read as 0."""
  ok = pc.match_substring_regex(uniques, _INT_RE).to_numpy(zero_copy_only=False)
  short = ok & (pc.binary_length(uniques).to_numpy(zero_copy_only=False) <= 18)
  text = pc.utf8_ltrim(pc.if_else(pa.array(short), uniques, '0'), '+')  # int64 cast rejects '+'
  vals = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False).copy()
  limit = 1 << _INT_BITS[input_type]
  bad = ~ok
  for i in np.flatnonzero(ok & ~short):  # rare: parse exactly, past int64's 18 safe digits
    v = int(uniques[i].as_py())
    bad[i] = not -limit <= v < limit
    vals[i] = 0 if bad[i] else v
  bad |= (vals < -limit) | (vals >= limit)
  vals[bad] = 0
  return vals, bad


def _identity(vals: np.ndarray, num_buckets: int, dense: bool) -> np.ndarray:
  """TF's categorical_column_with_identity(default_value=0): ids outside [0, num_buckets) -> 0.
  A dense column first drops its -1 cells as missing (-1 here, a zero vector); a tag list is
  a SparseTensor, which TF takes as is, so its -1 is out of range like any other -> 0."""
  ids = np.where((vals >= 0) & (vals < num_buckets), vals, 0).astype(np.int32)
  if dense:
    ids[vals == -1] = -1
  return ids


def _int_field_ids(values: pa.Array, fc, field):
  """Ids of an INT32/INT64 field (empty cells already filled): (int32 [n], bad [n]).

  hash_bucket_size: EasyRec hashes the integer's decimal text (tf.as_string), so '007' and
  '7' are one id and -1 is an id like any other. num_buckets: -1 is missing, other values
  outside [0, num_buckets) -> 0.
  """
  idx, uniques = _encode(values)
  vals, bad = _int_values(uniques, field.input_type)
  if fc.hash_bucket_size > 0:
    text = pc.cast(pa.array(vals), pa.string())
    ids = (fnv1a_64(text) % np.uint64(fc.hash_bucket_size)).astype(np.int32)
  else:
    ids = _identity(vals, fc.num_buckets, dense=True)
  return ids[idx], bad[idx]


def _ids(values: pa.Array, fc, field, dense: bool):
  """Ids of the values of one field (empty cells already filled with default_val) per the
  feature's hash / vocab / num_buckets: (int32 [n], bad [n] | None).

  dense: an IdFeature column, where TF drops '' (STRING) and -1 (num_buckets) cells as
  missing (-1 here); else tag tokens (never empty here), taken as they are.

  Hashing and vocab lookup run on every value given (the column's distinct values when
  _distinct chose them); integer parsing (a regex per value) goes through unique values.
  """
  if field.input_type in INT_TYPES:  # config validation allows hash or num_buckets here
    ids, bad = _int_field_ids(values, fc, field)
    return ids, (bad if bad.any() else None)
  starts, lengths, data = _offsets_and_bytes(values)
  bad = None
  if fc.hash_bucket_size > 0:
    h, order = _fnv1a_64_sorted(starts, lengths, data)
    h %= np.uint64(fc.hash_bucket_size)
    ids = np.empty(len(h), np.int32)
    ids[order] = h
  elif fc.vocab_list:
    index = pc.index_in(values, value_set=pa.array(list(fc.vocab_list), pa.string()))
    ids = index.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
  elif fc.num_buckets > 0:
    # EasyRec parses the text with string_to_number(int32), which fails on '' (an empty
    # cell without default_val) like on any other non-integer.
    idx, uniques = _encode(values)
    vals, bad_u = _int_values(uniques, 'STRING')
    return _identity(vals, fc.num_buckets, dense)[idx], (bad_u[idx] if bad_u.any() else None)
  else:
    raise ValueError(f"feature '{fc.feature_name}': needs hash_bucket_size, num_buckets or "
                     'vocab_list')
  if dense:
    ids[lengths == 0] = -1
  return ids, bad


def _numbers(uniques: pa.Array, field):
  """Parses distinct values (empty -> _cell_default) as numbers: (float64 [U], bad [U]|None).

  bad: not a number (an integer in an INT field, within its range), or one that is not
  finite in float32, the model's dtype: 1e39 overflows to inf there. 'nan' and 'inf' are
  not numbers here (TF would parse them), so a NaN or inf never reaches the loss.
  """
  filled = pc.if_else(pc.equal(uniques, ''), _cell_default(field), uniques)
  if field.input_type in INT_TYPES:
    ints, bad = _int_values(filled, field.input_type)
    vals = ints.astype(np.float64)
  else:
    ok = pc.match_substring_regex(filled, _FLOAT_RE)
    vals = pc.cast(pc.if_else(ok, filled, '0'), pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~ok.to_numpy(zero_copy_only=False)
  with np.errstate(over='ignore'):
    bad |= ~np.isfinite(vals.astype(np.float32))
  return np.where(bad, 0.0, vals), (bad if bad.any() else None)  # bad rows are dropped or fail


def _map_back(idx, per_unique, bad_unique):
  return per_unique[idx], (bad_unique[idx] if bad_unique is not None else None)


def _tags(column, fc, field):
  """TagFeature: split, drop empty tokens (TF string_split skips them), id per token, pack
  left into [N, L] padded with -1."""
  arr = _fill_empty(_as_array(column), field.default_val)
  n = len(arr)
  lists = pc.split_pattern(arr, pattern=fc.separator)
  tokens = lists.flatten()
  row = np.repeat(np.arange(n), pc.list_value_length(lists).to_numpy(zero_copy_only=False))
  keep = pc.binary_length(tokens).to_numpy(zero_copy_only=False) > 0
  ids, bad_tok = _ids(_as_array(tokens.filter(pa.array(keep))), fc, field, dense=False)
  row_kept = row[keep]
  counts = np.bincount(row_kept, minlength=n)
  out = np.full((n, max(1, int(counts.max(initial=0)))), -1, np.int32)
  pos = np.arange(len(row_kept)) - (np.cumsum(counts) - counts)[row_kept]
  out[row_kept, pos] = ids
  bad = None if bad_tok is None else np.bincount(row_kept[bad_tok], minlength=n) > 0
  return out, bad


def _vectors(column, fc, field):
  """RawFeature with raw_input_dim > 1: 'v1|v2|...' -> float32 [N, raw_input_dim].

  A row with another number of values, or a value that is not a number, is bad.
  """
  arr = _fill_empty(_as_array(column), field.default_val)
  lists = pc.split_pattern(arr, pattern=fc.separator)
  lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
  flat = lists.flatten()
  idx, uniques = _encode(flat)
  vals, bad_val = _numbers(uniques, field)
  vals, bad_val = _map_back(idx, vals.astype(np.float32), bad_val)
  row = np.repeat(np.arange(len(arr)), lengths)
  bad = lengths != fc.raw_input_dim
  if bad_val is not None:
    bad |= np.bincount(row[bad_val], minlength=len(arr)) > 0
  out = np.zeros((len(arr), fc.raw_input_dim), np.float32)
  ok = ~bad[row]
  out[row[ok], (np.arange(len(row)) - (np.cumsum(lengths) - lengths)[row])[ok]] = vals[ok]
  return out, (bad if bad.any() else None)


# Rows of a chunk sampled to decide whether its values repeat enough to transform them once each.
_SAMPLE_ROWS = 4096


def _distinct(chunk):
  """The chunk as a pa.DictionaryArray when transforming its distinct values once and
  gathering the results by index is the cheaper way, else None.

  A DictionaryArray (ParquetInput hands its typed columns over so) is used as it is; its
  entries no row uses are transformed too, harmlessly (results are gathered by row), except
  that they would widen a TagFeature's L, so a tag column's dictionary holds used values
  only. Text is dictionary encoded when its first _SAMPLE_ROWS values hold at most half as
  many distinct ones: measured on 200k-row taobao columns (2 to 12k distinct values),
  encoding and hashing the uniques costs 0.6-0.9x hashing every value, tag lists 0.5x; on a
  column of nearly all distinct values (e.g. a day's user ids) encoding costs more than it
  saves.
  """
  if isinstance(chunk, pa.DictionaryArray):
    return chunk
  if not isinstance(chunk, pa.Array) or len(chunk) < 2:
    return None
  sample = chunk.slice(0, _SAMPLE_ROWS)
  if 2 * len(pc.unique(sample)) > len(sample):
    return None
  # A null is its own entry (the text transforms read it as ''), so the indices have no nulls.
  return pc.dictionary_encode(chunk, null_encoding='encode')


def _per_distinct(transform, chunk, *args):
  """transform(chunk, *args), computed on the chunk's distinct values when _distinct says
  so: (values, bad) of the dictionary, gathered by the indices."""
  encoded = _distinct(chunk)
  if encoded is None:
    return transform(chunk, *args)
  values, bad = transform(encoded.dictionary, *args)
  idx = encoded.indices.to_numpy(zero_copy_only=False)
  # np.take: 2x (ids) to 5x (tag rows) faster than fancy indexing.
  return np.take(values, idx, axis=0), (None if bad is None else np.take(bad, idx))


def _per_chunk(transform):
  """Applies a transform to each chunk of a ChunkedArray (per distinct value where that is
  cheaper, _per_distinct) and concatenates the results.

  Chunks (the CSV reader's blocks) are transformed one by one rather than combined first: that
  avoids copying the column, and the smaller temporaries are reused by malloc instead of
  page-faulting fresh memory. Measured on 1M taobao rows: system time of a cache build
  0.8-1.4 s -> 0.2-0.6 s.
  """
  @functools.wraps(transform)
  def wrapped(column, *args):
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_per_distinct(transform, chunk, *args)
             for chunk in chunks or [column.combine_chunks()]]
    if len(parts) == 1:
      return parts[0]
    values = [v for v, _ in parts]
    if values[0].ndim == 2 and values[0].dtype.kind == 'i':  # tags: pad to the widest L
      width = max(v.shape[1] for v in values)
      values = [np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=-1) for v in values]
    bad = None
    if any(b is not None for _, b in parts):
      bad = np.concatenate([np.zeros(len(v), bool) if b is None else b for v, b in parts])
    return np.concatenate(values), bad
  return wrapped


@_per_chunk
def transform_feature(column, fc, field):
  """Transforms one string column for one feature.

  Args:
    column: pyarrow string or binary (Chunked)Array [N], the feature's input column, or a
      DictionaryArray of such text whose every entry is used (no null indices).
    fc: the feature config (feature_type, hash_bucket_size, num_buckets, vocab_list,
      boundaries, separator, ...).
    field: the input field config of that column (input_name, input_type, default_val).
  Returns:
    (values, bad): values as in the module docstring; bad is a bool [N] mask of rows with an
    unparsable value, or None.
  """
  if fc.feature_type == 'TagFeature':
    return _tags(column, fc, field)
  if fc.feature_type == 'IdFeature':
    return _ids(_fill_empty(_as_array(column), _cell_default(field)), fc, field, dense=True)
  if fc.feature_type == 'RawFeature' and fc.raw_input_dim > 1:
    return _vectors(column, fc, field)
  if fc.feature_type == 'RawFeature':
    idx, uniques = _encode(column)
    vals, bad = _numbers(uniques, field)
    # TF parses FLOAT fields and compares to its float32 boundaries in float32; do the same so a
    # value that rounds onto a boundary lands in the same bucket.
    vals = vals.astype(np.float32)
    if fc.boundaries:
      buckets = np.searchsorted(np.asarray(fc.boundaries, np.float32), vals, side='right')
      return _map_back(idx, buckets.astype(np.int32), bad)
    return _map_back(idx, vals, bad)
  raise ValueError(f"feature '{fc.feature_name}': unsupported feature_type {fc.feature_type!r}")


@_per_chunk
def transform_label(column, field):
  """Label column -> (float32 [N], bad [N] | None); empty -> default_val or 0."""
  idx, uniques = _encode(column)
  vals, bad = _numbers(uniques, field)
  return _map_back(idx, vals.astype(np.float32), bad)
