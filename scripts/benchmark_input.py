"""Benchmarks the CSV input cache on synthetic data with EasyRec's taobao schema.

  .venv/bin/python scripts/benchmark_input.py [--rows 1000000] [--profile]

Prints one JSON line: {"rows", "cache_build_rows_per_s", "cache_load_rows_per_s", "csv_bytes",
"cache_build_cpu_s"}. --profile prints a cProfile of the cache build to stderr, with the
per-column transforms run serially so that cProfile (main thread only) sees them.
"""
import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmoe_jax.data import csv_input

_TAOBAO_HASH_BUCKETS = dict(
    pid=10, adgroup_id=100000, cate_id=10000, campaign_id=100000, customer=100000,
    brand=100000, user_id=100000, cms_segid=100, cms_group_id=100, final_gender_code=10,
    age_level=10, pvalue_level=10, shopping_level=10, occupation=10, new_user_class_level=10)


def taobao_schema():
  """EasyRec samples/model_config/mmoe_on_taobao.config: (data_config, feature_configs) dicts."""
  string_cols = ['pid', 'adgroup_id', 'cate_id', 'campaign_id', 'customer', 'brand', 'user_id',
                 'cms_segid', 'cms_group_id', 'final_gender_code', 'age_level', 'pvalue_level',
                 'shopping_level', 'occupation', 'new_user_class_level', 'tag_category_list',
                 'tag_brand_list']
  types = [('clk', 'INT32'), ('buy', 'INT32')] + [(c, 'STRING') for c in string_cols] + [
      ('price', 'INT32')]
  data_config = dict(
      input_fields=tuple(dict(input_name=n, input_type=t, default_val='') for n, t in types),
      label_fields=('clk', 'buy'), separator=',', with_header=False, ignore_error=False,
      batch_size=4096, shuffle=True)

  def feature(name, feature_type='IdFeature', hash_bucket_size=0, num_buckets=0):
    return dict(feature_name=name, input_names=(name,), feature_type=feature_type,
                embedding_name='', embedding_dim=16, hash_bucket_size=hash_bucket_size,
                num_buckets=num_buckets, vocab_list=(), boundaries=(), separator='|',
                combiner='sum', raw_input_dim=1)

  feature_configs = tuple(
      [feature(n, hash_bucket_size=b) for n, b in _TAOBAO_HASH_BUCKETS.items()] +
      [feature(n, 'TagFeature', hash_bucket_size=100000)
       for n in ('tag_category_list', 'tag_brand_list')] +
      [feature('price', num_buckets=50)])
  return data_config, feature_configs


def _ids(rng, n, high):
  """Skewed (popular ids repeat, as in click logs) ids in [0, high) as strings."""
  return pc.cast(pa.array((high * rng.random(n) ** 3).astype(np.int64)), pa.string())


def _tag_lists(rng, n, high):
  counts = rng.integers(1, 6, n)
  offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
  lists = pa.ListArray.from_arrays(pa.array(offsets), _ids(rng, int(offsets[-1]), high))
  return pc.binary_join(lists, '|')


def write_taobao_csv(path, rows, seed=0):
  """Writes `rows` synthetic headerless taobao rows (value ranges roughly as in the real data)."""
  rng = np.random.default_rng(seed)
  small = lambda lo, hi: pc.cast(pa.array(rng.integers(lo, hi, rows)), pa.string())
  cols = {
      'clk': pa.array((rng.random(rows) < 0.05).astype(np.int32)),
      'buy': pa.array((rng.random(rows) < 0.003).astype(np.int32)),
      'pid': pa.array(np.where(rng.random(rows) < 0.5, '430548_1007', '430539_1007')),
      'adgroup_id': _ids(rng, rows, 850000), 'cate_id': _ids(rng, rows, 12000),
      'campaign_id': _ids(rng, rows, 420000), 'customer': _ids(rng, rows, 250000),
      'brand': _ids(rng, rows, 460000), 'user_id': _ids(rng, rows, 1140000),
      'cms_segid': small(0, 97), 'cms_group_id': small(0, 13),
      'final_gender_code': small(1, 3), 'age_level': small(0, 7), 'pvalue_level': small(1, 4),
      'shopping_level': small(1, 4), 'occupation': small(0, 2),
      'new_user_class_level': small(1, 5),
      'tag_category_list': _tag_lists(rng, rows, 12000),
      'tag_brand_list': _tag_lists(rng, rows, 460000),
      'price': pa.array(rng.lognormal(4, 1.5, rows).astype(np.int32) + 1),
  }
  pacsv.write_csv(pa.table(cols), path,
                  pacsv.WriteOptions(include_header=False, quoting_style='none'))


def _cpu_s():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--profile', action='store_true',
                      help='print a cProfile of the (serial) cache build to stderr')
  args = parser.parse_args()

  data_config, feature_configs = taobao_schema()
  data_config['input_fields'] = tuple(
      ml_collections.ConfigDict(f) for f in data_config['input_fields'])
  data_config = ml_collections.ConfigDict(data_config)
  feature_configs = tuple(ml_collections.ConfigDict(f) for f in feature_configs)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'taobao.csv')
    write_taobao_csv(path, args.rows)
    cache_dir = os.path.join(tmp, 'cache')
    quiet = lambda _: None

    profiler = cProfile.Profile() if args.profile else None
    if profiler:  # cProfile sees the main thread only, so run the transforms there
      csv_input._parallel = lambda fn, items: list(map(fn, items))
    start, cpu_start = time.perf_counter(), _cpu_s()
    if profiler:
      profiler.enable()
    csv_input.load_csv(path, data_config, feature_configs, cache_dir, log=quiet)
    if profiler:
      profiler.disable()
    build_s, build_cpu_s = time.perf_counter() - start, _cpu_s() - cpu_start

    start = time.perf_counter()
    data = csv_input.load_csv(path, data_config, feature_configs, cache_dir, log=quiet)
    # load_csv memory-maps the cache, so also read every array: time to data in memory.
    for a in (*data.features.values(), *data.labels.values()):
      np.array(a)
    load_s = time.perf_counter() - start

    if profiler:
      pstats.Stats(profiler, stream=sys.stderr).sort_stats('tottime').print_stats(25)
    # cache_build_cpu_s (user + system, all threads) helps read build_s on a shared machine.
    print(json.dumps(dict(rows=args.rows, cache_build_rows_per_s=round(args.rows / build_s),
                          cache_load_rows_per_s=round(args.rows / load_s),
                          csv_bytes=os.path.getsize(path),
                          cache_build_cpu_s=round(build_cpu_s, 3))))


if __name__ == '__main__':
  main()
