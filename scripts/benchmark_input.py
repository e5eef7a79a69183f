r"""Benchmarks the input path: EasyRec CSV -> columnar cache, for a config's features.

  python scripts/benchmark_input.py [--config=configs/mmoe.py] [--rows=1000000] [--profile]

Writes `rows` rows of the embedded synthetic taobao data (the schema of configs/mmoe.py)
to a temporary CSV, then times building its cache (parse, hash, bucketize: cold) and
loading it back (warm). Prints one JSON line: rows, cache_build_rows_per_s,
cache_load_rows_per_s, csv_bytes, cache_build_cpu_s (user + system CPU seconds of the
build, all threads: it tells a slow build from a busy machine).
"""

import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from mmoe_jax.config import load_config, validate
from mmoe_jax.data import columnar, csv_input, synthetic

CONFIG = flags.DEFINE_string('config', 'configs/mmoe.py', 'Config file[:arg] (taobao schema).')
ROWS = flags.DEFINE_integer('rows', 1_000_000, 'Rows to write and parse.')
PROFILE = flags.DEFINE_bool('profile', False, 'Print a cProfile of the (serial) build to stderr.')


def _cpu_s():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def main(argv):
  del argv
  config = validate(load_config(CONFIG.value))
  rows = ROWS.value
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'taobao.csv')
    synthetic.write_csv(path, rows, seed=0, split='benchmark')
    cache_dir = os.path.join(tmp, 'cache')

    def load():
      return csv_input.load_csv(path, config.data_config, config.feature_configs, cache_dir,
                                log=lambda _: None)

    profiler = cProfile.Profile() if PROFILE.value else None
    if profiler:  # cProfile sees the main thread only, so run the transforms there
      columnar.parallel = lambda fn, items: list(map(fn, items))
      profiler.enable()
    start, cpu_start = time.perf_counter(), _cpu_s()
    load()
    build_s, build_cpu_s = time.perf_counter() - start, _cpu_s() - cpu_start
    if profiler:
      profiler.disable()
      pstats.Stats(profiler, stream=sys.stderr).sort_stats('tottime').print_stats(25)

    start = time.perf_counter()
    data = load()
    for a in (*data.features.values(), *data.labels.values()):
      np.array(a)  # the cache is memory-mapped: count reading every array into memory
    load_s = time.perf_counter() - start
    print(json.dumps(dict(rows=rows, cache_build_rows_per_s=round(rows / build_s),
                          cache_load_rows_per_s=round(rows / load_s),
                          csv_bytes=os.path.getsize(path),
                          cache_build_cpu_s=round(build_cpu_s, 3))))


if __name__ == '__main__':
  app.run(main)
