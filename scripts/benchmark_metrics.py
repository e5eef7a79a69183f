r"""Time of the whole-eval-set metrics on the host, as one JSON line.

  python scripts/benchmark_metrics.py [--rows=1000000] [--users=100000] [--repeats=5]

Makes --rows rows of random labels (30% positive), float32 scores (rounded to 1e-4, so
that ties occur) and group codes of --users users, and times, each the best of --repeats
runs: gauc (metrics.grouped_auc) with each reduction, the exact auc, max_f1, and the dense
coding of string user ids (pyarrow dictionary_encode, as data/groups.py does at load time).
`*_s` are wall seconds, `*_cpu_s` CPU seconds of this process (one thread: numpy's sorts
are single-threaded), `*_rows_per_s` rows over the wall seconds.
"""

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from absl import app, flags

from mmoe_jax import metrics

ROWS = flags.DEFINE_integer('rows', 1_000_000, 'Eval rows.')
USERS = flags.DEFINE_integer('users', 100_000, 'Distinct group ids.')
REPEATS = flags.DEFINE_integer('repeats', 5, 'Runs per measurement; the best is reported.')


def best(fn):
  """(wall s, CPU s) of the fastest of REPEATS calls of fn()."""
  runs = []
  for _ in range(REPEATS.value):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    runs.append((time.perf_counter() - wall, time.process_time() - cpu))
  return min(runs)


def main(_):
  rng = np.random.default_rng(0)
  n = ROWS.value
  labels = (rng.random(n) < 0.3).astype(np.float32)
  scores = np.round(rng.random(n) * 0.7 + 0.3 * labels, 4).astype(np.float32)
  uids = rng.integers(0, USERS.value, n).astype(np.int32)
  result = dict(rows=n, users=USERS.value, repeats=REPEATS.value)
  timed = {f'gauc_{r}': lambda r=r: metrics.grouped_auc(labels, scores, uids, r)
           for r in ('mean', 'mean_by_sample_num', 'mean_by_positive_num')}
  timed['auc'] = lambda: metrics.auc(labels, scores)
  timed['max_f1'] = lambda: metrics.max_f1(labels, scores)
  text = pa.array([f'user{u}'.encode() for u in uids], pa.binary())
  timed['encode_string_uids'] = lambda: pc.dictionary_encode(text).indices.to_numpy()
  for name, fn in timed.items():
    wall, cpu = best(fn)
    result.update({f'{name}_s': round(wall, 4), f'{name}_cpu_s': round(cpu, 4),
                   f'{name}_rows_per_s': round(n / wall)})
  result['gauc_mean'] = metrics.grouped_auc(labels, scores, uids)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
