r"""Measures an exported artifact served by mmoe_jax/serving.py: its size, the load time,
and rows per second of predict_csv (parse, feature transforms and the model), first call
(compiling) and warm; prints one JSON line.

  python scripts/benchmark_serving.py --artifact=/tmp/mmoe_export --input_path=rows.csv

It imports serving alone (no model code), as a user's process would.
"""

import argparse
import json
import os
import time

from mmoe_jax import serving


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--artifact', required=True)
  parser.add_argument('--input_path', required=True)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  start = time.perf_counter()
  predictor = serving.load(args.artifact)
  loaded = time.perf_counter() - start
  times = []
  for _ in range(args.repeats + 1):
    start = time.perf_counter()
    out = predictor.predict_csv(args.input_path)
    times.append(time.perf_counter() - start)
  rows = len(next(iter(out.values())))
  size = sum(os.path.getsize(os.path.join(args.artifact, f)) for f in os.listdir(args.artifact))
  print(json.dumps(dict(
      artifact_bytes=size, load_s=round(loaded, 3), rows=rows,
      first_call_rows_per_s=round(rows / times[0]), rows_per_s=round(rows / min(times[1:])),
      batch_size=predictor.batch_size, cpus=os.cpu_count(),
      load_average=round(os.getloadavg()[0], 1))), flush=True)


if __name__ == '__main__':
  main()
