r"""Throughput of the real training code path, as one JSON line.

  python scripts/benchmark.py --config=configs/mmoe.py
  python scripts/benchmark.py --config=configs/mmoe.py --config.data_config.batch_size=4096 \
      --config.train_config.mixed_precision=BF16 --config.data_config.input_mode=streaming
  python scripts/benchmark.py --config=configs/mmoe.py --input_only [--profile_input]
  python scripts/benchmark.py --config=configs/mtl_zoo.py:model=ple --flops
  python scripts/benchmark.py --config=configs/mtl_zoo.py --zoo   # every zoo model, in turns

Writes --rows rows of the embedded synthetic taobao data to a temporary CSV and times,
in order: building its columnar cache (parse, hash, bucketize: cold) and loading it back
(warm); then training on it through the step scripts/train.py runs (Trainer and the
input_pipeline of data_config.input_mode), after a first dispatch that compiles
(reported apart); the streaming pipeline alone, delivering batches to the device as
fast as it can; and evaluation (Trainer.evaluate: predictions and AUC) of --eval_rows
rows. Each `*_per_s` is a rate over at least --seconds. --flops adds XLA's estimate of the
train step's FLOPs per example, so that models of different work can be compared. --zoo
(configs/mtl_zoo.py) times the training of every taobao model of the zoo instead, in turns.
"""

import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from mmoe_jax import cli
from mmoe_jax.config import import_config, optimizer_name, validate
from mmoe_jax.data import csv_input, synthetic
from mmoe_jax.training import evaluation, input_pipeline, sweep
from mmoe_jax.training import trainer as trainer_lib

ROWS = flags.DEFINE_integer('rows', 1_000_000, 'Rows to write, cache and train on.')
EVAL_ROWS = flags.DEFINE_integer('eval_rows', 100_000, 'Rows to evaluate (of the same data).')
SECONDS = flags.DEFINE_float('seconds', 10.0, 'Least seconds each rate is measured over.')
INPUT_ONLY = flags.DEFINE_bool('input_only', False, 'Only the cache build and load.')
PROFILE_INPUT = flags.DEFINE_bool('profile_input', False,
                                  'Print a cProfile of the (serial) cache build to stderr.')
FLOPS = flags.DEFINE_bool('flops', False, "Add the train step's compiled cost analysis "
                           '(FLOPs and bytes per example), to compare models by their work.')
ZOO = flags.DEFINE_bool('zoo', False, 'With --config=configs/mtl_zoo.py[:arg]: every model of '
                        'its taobao part on the same data, timed round-robin (so that a '
                        'changing machine load falls on all alike), with their FLOPs.')
TRACE_DIR = flags.DEFINE_string('trace_dir', '', 'Write a jax.profiler trace of two train '
                                'dispatches here, and add the step\'s compiled cost analysis.')


def _cpu_s():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def cache_rates(config, path, cache_dir):
  """Builds the cache of `path` (cold), loads it again (warm); returns (data, rates)."""

  def load():
    return csv_input.load_csv(path, config.data_config, config.feature_configs, cache_dir,
                              log=lambda _: None)

  profiler = cProfile.Profile() if PROFILE_INPUT.value else None
  if profiler:  # cProfile sees the main thread only, so run the transforms there
    csv_input._parallel = lambda fn, items: list(map(fn, items))
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
  rows = data.num_rows
  # cache_build_cpu_s: CPU seconds of the build, all threads: a slow build or a busy machine.
  return data, dict(rows=rows, csv_bytes=os.path.getsize(path),
                    cache_build_rows_per_s=round(rows / build_s),
                    cache_build_cpu_s=round(build_cpu_s, 3),
                    cache_load_rows_per_s=round(rows / load_s))


def train_rates(config, trainer, data):
  """Train examples/s through input_pipeline.make's input, after a first (compiling)
  dispatch; then the streaming input alone, in rows delivered to the device per second."""
  batch_size = config.data_config.batch_size
  sampler = input_pipeline.BatchSampler(data.num_rows, batch_size, config.seed,
                                        config.data_config.shuffle)
  start = time.perf_counter()
  train_input = input_pipeline.make(config, trainer, data, sampler)
  setup_s = time.perf_counter() - start
  state = trainer.init_state()
  chunks = train_input.chunks(0, 1 << 40)  # steps run on across epochs, as in training
  start = time.perf_counter()
  first = next(chunks)
  state, _ = train_input.run(state, first)
  jax.block_until_ready(state)
  first_s = time.perf_counter() - start
  steps = dispatches = 0
  start = time.perf_counter()
  while dispatches < 2 or time.perf_counter() - start < SECONDS.value:
    chunk = next(chunks)
    state, _ = train_input.run(state, chunk)
    steps, dispatches = steps + len(chunk), dispatches + 1
    if dispatches % 8 == 0:  # bound the dispatch queue without a sync per step
      jax.block_until_ready(state)
  jax.block_until_ready(state)
  train_s = time.perf_counter() - start
  result = dict(input_mode=train_input.mode, input_setup_s=round(setup_s, 3),
                steps_per_dispatch=len(first), time_to_first_dispatch_s=round(first_s, 3),
                train_steps_timed=steps,
                train_examples_per_s=round(steps * batch_size / train_s))
  if TRACE_DIR.value:
    jax.profiler.start_trace(TRACE_DIR.value)
    for _ in range(2):
      state, _ = train_input.run(state, next(chunks))
    jax.block_until_ready(state)
    jax.profiler.stop_trace()
  train_input.close()

  streaming = input_pipeline.Streaming(trainer, data, sampler)
  batches = streaming.chunks(0, 1 << 40)
  delivered = 0
  start = time.perf_counter()
  while time.perf_counter() - start < SECONDS.value:
    jax.block_until_ready(streaming.next_batch(next(batches).start))
    delivered += batch_size
  result['streaming_rows_per_s'] = round(delivered / (time.perf_counter() - start))
  streaming.close()
  return state, result


def cost_analysis(trainer, state, data):
  """FLOPs and bytes of one compiled train step, per example (XLA's estimate)."""
  example = input_pipeline.batch(data, np.arange(trainer.config.data_config.batch_size))
  cost = trainer.train_step.lower(state, example).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  n = trainer.config.data_config.batch_size
  return dict(step_flops_per_example=round(cost.get('flops', 0) / n),
              step_bytes_accessed_per_example=round(cost.get('bytes accessed', 0) / n))


def eval_rate(trainer, state, data):
  rows = data.take(np.arange(min(EVAL_ROWS.value, data.num_rows)))
  size = min(trainer.config.data_config.eval_batch_size, rows.num_rows)
  evaluation.evaluate(trainer, state, rows.take(np.arange(size)))  # compiles
  evaluated = 0
  start = time.perf_counter()
  while not evaluated or time.perf_counter() - start < SECONDS.value:
    evaluation.evaluate(trainer, state, rows)
    evaluated += rows.num_rows
  return dict(eval_rows=rows.num_rows,
              eval_examples_per_s=round(evaluated / (time.perf_counter() - start)))


def zoo_rates(configs, data):
  """{model: rates} of every config on `data`: each compiled first, then timed in turns
  (one dispatch each per round, for --seconds in all) so that the load is shared alike;
  examples/s is over each model's timed dispatches, with XLA's FLOPs per example."""
  models = {}
  for config in configs:
    trainer = trainer_lib.Trainer(config, input_pipeline.batch(data, np.arange(2)))
    sampler = input_pipeline.BatchSampler(data.num_rows, config.data_config.batch_size,
                                          config.seed, config.data_config.shuffle)
    train_input = input_pipeline.make(config, trainer, data, sampler)
    chunks = train_input.chunks(0, 1 << 40)
    state, _ = train_input.run(trainer.init_state(), next(chunks))  # compiles
    jax.block_until_ready(state)
    models[config.model_config.model_name] = dict(
        trainer=trainer, input=train_input, chunks=chunks, state=state, seconds=0.0, rows=0,
        **cost_analysis(trainer, state, data))
  start, rounds = time.perf_counter(), 0
  while rounds < 2 or time.perf_counter() - start < SECONDS.value:
    rounds += 1
    for m in models.values():
      tic = time.perf_counter()
      chunk = next(m['chunks'])
      m['state'], _ = m['input'].run(m['state'], chunk)
      jax.block_until_ready(m['state'])
      m['seconds'] += time.perf_counter() - tic
      m['rows'] += len(chunk) * m['trainer'].config.data_config.batch_size
  out = {}
  for name, m in models.items():
    m['input'].close()
    out[name] = dict(train_examples_per_s=round(m['rows'] / m['seconds']),
                     step_flops_per_example=m['step_flops_per_example'],
                     step_bytes_accessed_per_example=m['step_bytes_accessed_per_example'])
  return out


def zoo_configs():
  """configs/mtl_zoo.py's taobao models, at --config's arg and --config.x=y otherwise."""
  path, _, arg = config_flags.get_config_filename(flags.FLAGS['config']).partition(':')
  module = import_config(path)
  if not hasattr(module, 'TAOBAO'):
    raise ValueError(f'--zoo: {path} has no TAOBAO models (use configs/mtl_zoo.py)')
  arg = ','.join(a for a in arg.split(',') if a and not a.startswith('model='))
  run = lambda m: sweep.Run(','.join(filter(None, [arg, f'model={m}'])))
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  return [run(m).config(module, overrides) for m in module.TAOBAO]


def main():
  config = validate(cli.CONFIG.value)
  configs = zoo_configs() if ZOO.value else None
  train = config.train_config
  result = dict(model=config.model_config.model_name or config.model_config.model_class,
                device=jax.devices()[0].device_kind, jax=jax.__version__,
                batch_size=config.data_config.batch_size,
                mixed_precision=train.mixed_precision or 'FP32',
                optimizer=optimizer_name(train.optimizer_config))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'taobao.csv')
    synthetic.write_csv(path, ROWS.value, seed=0, split='benchmark')
    data, rates = cache_rates(config, path, os.path.join(tmp, 'cache'))
    result.update(rates)
    if configs:
      result['models'] = zoo_rates(configs, data)
    elif not INPUT_ONLY.value:
      trainer = trainer_lib.Trainer(config, input_pipeline.batch(data, np.arange(2)))
      result['embedding_rows'] = sum(
          t.shape[0] for t in jax.tree.leaves(jax.eval_shape(trainer.init_state)['params']
                                              ['embedding']))
      state, rates = train_rates(config, trainer, data)
      result.update(rates)
      if TRACE_DIR.value or FLOPS.value:
        result.update(cost_analysis(trainer, state, data))
      result.update(eval_rate(trainer, state, data))
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
