r"""Speed of R vmapped replicas against R sequential runs of the same config, in one process.

  python scripts/benchmark_sweep.py --config=configs/task_correlation.py --replicas=100

Prints one JSON line. Every mode trains R runs (seeds 0..R-1) for --steps steps on the same
data, through the sweep's device-resident step (mmoe_jax/training/sweep.py):
  vmapped:          one group of R replicas, one jitted step for all of them;
  sequential:       R runs one after another, each the same step with R = 1 (one compile,
                    reused: the best case for sequential runs);
  sequential_train: R runs through Trainer.train_step with host batches, the path
                    scripts/train.py takes (also compiled once).
total_s is the wall time of all R runs, compilation included (each mode compiles its step
once); examples_per_s is the steady state, without the compiling dispatch or run; speedup is
the faster sequential mode's total_s over vmapped's.
"""

import json
import time

import jax
import numpy as np
from absl import flags

from mmoe_jax import cli
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import validate
from mmoe_jax.training import input_pipeline, sweep
from mmoe_jax.training import trainer as trainer_lib

REPLICAS = flags.DEFINE_integer('replicas', 100, 'Number of runs (seeds 0..R-1).')
STEPS = flags.DEFINE_integer('steps', 200, 'Train steps per run.')
CHUNK = flags.DEFINE_integer('steps_per_dispatch', 50, 'Steps per dispatch (lax.scan length).')


def timed(fn):
  tic = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - tic


def scan_run(group, steps, chunk):
  """Trains `group` (all its replicas) for `steps`; returns the seconds of each dispatch."""
  state = group.init_state()
  times = []
  for step in range(0, steps, chunk):
    def dispatch():
      nonlocal state
      state, metrics = group.run_steps(state, group.train, group.indices(step, chunk))
      return metrics
    times.append(timed(dispatch))
  return times


def train_step_run(trainer, columns, seed, steps):
  """One run through Trainer.train_step with host batches (scripts/train.py's step)."""
  sampler = input_pipeline.BatchSampler(columns.num_rows, trainer.config.data_config.batch_size, seed)
  state = trainer.init_state(seed)
  for step in range(steps):  # each batch placed explicitly, as the streaming input does
    host = input_pipeline.batch(columns, sampler.indices(step))
    state, metrics = trainer.train_step(
        state, sharding_lib.global_batch(host, trainer.batch_sharding, sampler.batch_size))
  return metrics


def report(total_s, steady_s, steady_examples):
  return dict(examples_per_s=round(steady_examples / steady_s), total_s=round(total_s, 2))


def main():
  base = validate(cli.CONFIG.value)
  replicas, steps, chunk = REPLICAS.value, STEPS.value, CHUNK.value
  if steps % chunk or steps <= chunk:
    raise ValueError('--steps must be a multiple of --steps_per_dispatch, and larger')
  configs = []
  for seed in range(replicas):
    config = base.copy_and_resolve_references()
    config.unlock().seed = seed
    configs.append(config)
  batch = base.data_config.batch_size
  result = dict(config=flags.FLAGS['config'].config_filename, replicas=replicas, steps=steps,
                batch_size=batch, steps_per_dispatch=chunk, device=str(jax.devices()[0]))

  # Steady state: vmapped after its first (compiling) dispatch; sequential without run 0,
  # which compiled the step that the other runs reuse.
  times = scan_run(sweep.ReplicaGroup(configs), steps, chunk)
  result['vmapped'] = report(sum(times), sum(times[1:]), replicas * (steps - chunk) * batch)

  single = sweep.ReplicaGroup(configs[:1])
  run_times = []
  for seed in range(replicas):  # the same compiled step; each run its own init and batches
    single.seeds = np.array([seed], np.int32)
    single.samplers = [input_pipeline.BatchSampler(single.num_rows, batch, seed)]
    run_times.append(sum(scan_run(single, steps, chunk)))
  result['sequential'] = report(sum(run_times), sum(run_times[1:]),
                                (replicas - 1) * steps * batch)

  columns = single.train_columns[0]
  trainer = trainer_lib.Trainer(base, example=input_pipeline.batch(columns, np.arange(2)))
  run_times = [timed(lambda: train_step_run(trainer, columns, seed, steps))
               for seed in range(replicas)]
  result['sequential_train'] = report(sum(run_times), sum(run_times[1:]),
                                      (replicas - 1) * steps * batch)

  best = min(result['sequential']['total_s'], result['sequential_train']['total_s'])
  result['speedup'] = round(best / result['vmapped']['total_s'], 2)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
