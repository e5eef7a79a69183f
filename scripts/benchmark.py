r"""Throughput of the real training code path, as one JSON line.

  python scripts/benchmark.py --config=configs/mmoe.py
  python scripts/benchmark.py --config=configs/mmoe.py --config.data_config.batch_size=4096 \
      --config.train_config.mixed_precision=BF16 --config.data_config.input_mode=streaming
  python scripts/benchmark.py --config=configs/mmoe.py --input_only [--profile_input]
  python scripts/benchmark.py --config=configs/mtl_zoo.py:model=ple --flops
  python scripts/benchmark.py --config=configs/mtl_zoo.py --zoo   # every zoo model, in turns
  python scripts/benchmark.py --config=configs/mtl_zoo.py --zoo --zoo_models=mmoe,ple
  python scripts/benchmark.py --config=configs/mtl_zoo.py --zoo --zoo_models=mmoe,ple --split_step
  python scripts/benchmark.py --config=configs/mmoe.py --rows=30000000 --files=8 \
      --format=parquet --config.data_config.input_mode=streaming --tmp_dir=/tmp

Writes --rows rows of the embedded synthetic taobao data to a temporary CSV and times,
in order: building its columnar cache (parse, hash, bucketize: cold) and loading it back
(warm); then training on it through the step scripts/train.py runs (Trainer and the
input_pipeline of data_config.input_mode), after a first dispatch that compiles
(reported apart); the streaming pipeline alone, delivering batches to the device as
fast as it can; and evaluation (Trainer.evaluate: predictions and AUC) of --eval_rows
rows. Each `*_per_s` is a rate over at least --seconds. --flops adds XLA's estimate of the
train step's FLOPs per example, so that models of different work can be compared. --zoo
(configs/mtl_zoo.py) times the training of every taobao model of the zoo instead, in turns.

Data past memory: --files splits the rows over several files (written a million rows at a
time, so the writer stays small), --format=parquet writes Parquet (read as ParquetInput),
and `*_peak_anon_gb` is the process's peak anonymous memory (RssAnon, sampled every 10 ms;
page-cache pages of memory-mapped files are not anonymous) from the start of the cache build
and from the start of training.
"""

import cProfile
import json
import os
import pstats
import resource
import sys
import shutil
import tempfile
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from mmoe_jax import cli
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import import_config, optimizer_name, validate
from mmoe_jax.data import columnar, csv_input, parquet_input, synthetic
from mmoe_jax.training import evaluation, input_pipeline, sweep
from mmoe_jax.training import trainer as trainer_lib
from mmoe_jax.training.trainer import GRADIENT_NORM

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
ZOO_MODELS = flags.DEFINE_list('zoo_models', None, 'With --zoo: only these models (e.g. '
                               'mmoe,ple), in the zoo\'s order.')
SPLIT_STEP = flags.DEFINE_bool(
    'split_step', False, 'With --zoo: also time each model\'s train step in parts on one '
    'batch, in turns: the forward pass, forward and backward, the whole step (ms per call); '
    'with --trace_dir, a trace of each model\'s forward pass under <trace_dir>/<model>.')
FILES = flags.DEFINE_integer('files', 1, 'Files to split the --rows over.')
FORMAT = flags.DEFINE_enum('format', 'csv', ['csv', 'parquet'], 'The files\' format.')
TMP_DIR = flags.DEFINE_string('tmp_dir', None, 'Where to write the files (default: the '
                              'system temp dir); they are deleted at the end.')
COMPARE_GRAIN = flags.DEFINE_bool(
    'compare_grain', False, 'Also time host batches through Grain (pip install grain): one '
    'record per row, and Grain scheduling the same gather in 2 threads.')
WRITE_PIECE_ROWS = 1_000_000  # rows the synthetic writer makes at a time
TRACE_DIR = flags.DEFINE_string('trace_dir', '', 'Write a jax.profiler trace of two train '
                                'dispatches here, and add the step\'s compiled cost analysis '
                                '(with --zoo --split_step: of each model\'s forward pass).')


def _cpu_s():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


class PeakAnon:
  """The process's peak anonymous memory (RssAnon) since `reset`, sampled by a thread."""

  def __init__(self):
    self.peak = 0
    thread = threading.Thread(target=self._sample, daemon=True)
    thread.start()

  @staticmethod
  def now():
    with open('/proc/self/status') as f:
      return next(int(line.split()[1]) * 1024 for line in f if line.startswith('RssAnon:'))

  def _sample(self):
    while True:
      self.peak = max(self.peak, self.now())
      time.sleep(0.01)

  def reset(self):
    self.peak = self.now()

  def gb(self):
    return round(max(self.peak, self.now()) / 1e9, 3)


def write_files(tmp, rows, files, fmt):
  """--rows synthetic taobao rows as `files` files of `fmt` (a glob of them), written
  WRITE_PIECE_ROWS at a time: each piece is a CSV appended to its file or converted to a
  Parquet row group."""
  import pyarrow.csv as pacsv
  import pyarrow.parquet as pq
  paths = [os.path.join(tmp, f'part-{j:05d}.{fmt}') for j in range(files)]
  piece, schema = os.path.join(tmp, 'piece.csv'), None
  per_file = -(-rows // files)
  for j, path in enumerate(paths):
    writer, out = None, None
    for start in range(j * per_file, min(rows, (j + 1) * per_file), WRITE_PIECE_ROWS):
      n = min(WRITE_PIECE_ROWS, rows - start, (j + 1) * per_file - start)
      # One split name per piece (its rows are independent), from one world (seed 0).
      synthetic.write_csv(piece, n, seed=0, split=f'benchmark{start // WRITE_PIECE_ROWS}')
      if fmt == 'csv':
        out = out or open(path, 'wb')
        with open(piece, 'rb') as f:
          shutil.copyfileobj(f, out)
        continue
      table = pacsv.read_csv(piece, read_options=pacsv.ReadOptions(
          column_names=list(synthetic.COLUMNS)), convert_options=pacsv.ConvertOptions(
              column_types=schema))
      schema = schema or table.schema
      writer = writer or pq.ParquetWriter(path, schema)
      writer.write_table(table)
    (out or writer).close()
  for name in os.listdir(tmp):
    if name.startswith('piece.csv'):
      os.remove(os.path.join(tmp, name))
  return os.path.join(tmp, f'part-*.{fmt}') if files > 1 else paths[0]


def cache_rates(config, path, cache_dir, peak):
  """Builds the cache of `path` (cold), loads it again (warm); returns (data, rates)."""
  read = parquet_input.load_parquet if FORMAT.value == 'parquet' else csv_input.load_csv

  def load():
    return read(path, config.data_config, config.feature_configs, cache_dir, log=lambda _: None)

  profiler = cProfile.Profile() if PROFILE_INPUT.value else None
  if profiler:  # cProfile sees the main thread only, so read and transform there
    columnar.parallel = lambda fn, items, *_: list(map(fn, items))
    columnar.prefetch = lambda items: items
    profiler.enable()
  peak.reset()
  start, cpu_start = time.perf_counter(), _cpu_s()
  load()
  build_s, build_cpu_s = time.perf_counter() - start, _cpu_s() - cpu_start
  build_peak = peak.gb()
  if profiler:
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stderr).sort_stats('tottime').print_stats(25)
  start = time.perf_counter()
  data = load()
  for a in (*data.features.values(), *data.labels.values()):
    # The cache is memory-mapped: count reading every array, a million rows at a time.
    for row in range(0, len(a), WRITE_PIECE_ROWS):
      np.array(a[row:row + WRITE_PIECE_ROWS])
  load_s = time.perf_counter() - start
  rows = data.num_rows
  files = csv_input.expand_paths(path)
  # cache_build_cpu_s: CPU seconds of the build, all threads: a slow build or a busy machine;
  # per million rows it compares runs at different loads (the load average at its end).
  return data, dict(rows=rows, files=len(files), format=FORMAT.value,
                    input_bytes=sum(os.path.getsize(f) for f in files),
                    cache_build_rows_per_s=round(rows / build_s),
                    cache_build_cpu_s=round(build_cpu_s, 3),
                    cache_build_cpu_s_per_m_rows=round(build_cpu_s / rows * 1e6, 3),
                    cache_build_load_avg=round(os.getloadavg()[0], 2),
                    cache_build_peak_anon_gb=build_peak,
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
  # In its sharded layout, as the training loop makes it: an unplaced state (init_state)
  # would compile the dispatch a second time, inside the timed window.
  state = trainer.create_state()
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


def host_batch_rates(config, data):
  """Host batches (rows/s) gathered from the cache by input_pipeline.batch, and through
  Grain: one record per row (its random-access source model), and Grain's MapDataset
  scheduling the same batch gather in 2 threads."""
  import grain.python as grain  # pylint: disable=g-import-not-at-top
  batch_size = config.data_config.batch_size
  sampler = input_pipeline.BatchSampler(data.num_rows, batch_size, config.seed)

  def rate(batches):
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS.value:
      next(batches)
      rows += batch_size
    return round(rows / (time.perf_counter() - start))

  class Records:
    def __len__(self):
      return data.num_rows

    def __getitem__(self, row):
      return dict(features={k: v[row] for k, v in data.features.items()},
                  labels={k: v[row] for k, v in data.labels.items()})

  gather = lambda step: input_pipeline.batch(data, sampler.indices(step))
  per_record = grain.MapDataset.source(Records()).shuffle(seed=config.seed).batch(batch_size)
  scheduled = grain.MapDataset.range(1 << 40).map(gather).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  return dict(host_batch_rows_per_s=rate(map(gather, range(1 << 40))),
              grain_per_record_rows_per_s=rate(iter(per_record.to_iter_dataset())),
              grain_scheduled_gather_rows_per_s=rate(iter(scheduled)))


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
    # compiles; the state in its sharded layout, or the next dispatch compiles again
    state, _ = train_input.run(trainer.create_state(), next(chunks))
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
  if SPLIT_STEP.value:
    for name, parts in split_step(models, data).items():
      out[name].update(parts)
  return out


def split_step(models, data, rounds=40, calls=10):
  """{model: {forward_ms, forward_backward_ms, step_ms}} on one batch of `data`: the ms per
  call of each model's train step and of two parts of it, every model and part in turns
  (`calls` calls per round), the median over `rounds`. The parts are Trainer.step jitted
  for one output: the loss (XLA then drops the backward pass and the update) and the
  gradient norm (drops the update); step_ms is Trainer.train_step itself."""
  parts = {name: _step_parts(m['trainer'], m['state'], data) for name, m in models.items()}
  seconds = {(name, part): [] for name in parts for part in parts[name]}
  for fn in (fn for p in parts.values() for fn in p.values()):
    jax.block_until_ready(fn())  # compiles
  for _ in range(rounds):
    for (name, part), times in seconds.items():
      tic = time.perf_counter()
      for _ in range(calls):
        out = parts[name][part]()
      jax.block_until_ready(out)
      times.append((time.perf_counter() - tic) / calls)
  if TRACE_DIR.value:
    for name in parts:
      with jax.profiler.trace(os.path.join(TRACE_DIR.value, name)):
        jax.block_until_ready([parts[name]['forward_ms']() for _ in range(50)])
  return {name: {part: round(float(np.median(seconds[name, part])) * 1e3, 3)
                 for part in parts[name]} for name in parts}


def _step_parts(trainer, state, data):
  """split_step's three callables for one model, each on the same placed batch."""
  size = trainer.config.data_config.batch_size
  batch = sharding_lib.global_batch(input_pipeline.batch(data, np.arange(size)),
                                    trainer.batch_sharding, size)

  def part(output):  # not donating the state: every call takes the same one
    fn = jax.jit(lambda s, b: output(trainer.step(s, b)))
    return lambda: fn(state, batch)

  train = dict(state=jax.tree.map(jnp.copy, state))  # train_step donates its state

  def step():
    train['state'], _ = trainer.train_step(train['state'], batch)
    return train['state']

  return dict(forward_ms=part(lambda out: out[1]['total_loss']),
              forward_backward_ms=part(lambda out: out[1][GRADIENT_NORM]), step_ms=step)


def zoo_configs():
  """configs/mtl_zoo.py's taobao models, at --config's arg and --config.x=y otherwise."""
  path, _, arg = config_flags.get_config_filename(flags.FLAGS['config']).partition(':')
  module = import_config(path)
  if not hasattr(module, 'TAOBAO'):
    raise ValueError(f'--zoo: {path} has no TAOBAO models (use configs/mtl_zoo.py)')
  arg = ','.join(a for a in arg.split(',') if a and not a.startswith('model='))
  run = lambda m: sweep.Run(','.join(filter(None, [arg, f'model={m}'])))
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  models = ZOO_MODELS.value or module.TAOBAO
  unknown = sorted(set(models) - set(module.TAOBAO))
  if unknown:
    raise ValueError(f"--zoo_models: {', '.join(unknown)} not in {path}'s TAOBAO "
                     f"({', '.join(module.TAOBAO)})")
  return [run(m).config(module, overrides) for m in module.TAOBAO if m in models]


def main():
  if SPLIT_STEP.value and not ZOO.value:
    raise ValueError('--split_step times the models of --zoo: pass --zoo')
  if ZOO.value and TRACE_DIR.value and not SPLIT_STEP.value:
    raise ValueError('--trace_dir with --zoo traces the forward passes of --split_step: '
                     'pass --split_step')
  config = validate(cli.CONFIG.value)
  configs = zoo_configs() if ZOO.value else None
  train = config.train_config
  result = dict(model=config.model_config.model_name or config.model_config.model_class,
                device=jax.devices()[0].device_kind, jax=jax.__version__,
                batch_size=config.data_config.batch_size,
                mixed_precision=train.mixed_precision or 'FP32',
                optimizer=optimizer_name(train.optimizer_config))
  peak = PeakAnon()
  with tempfile.TemporaryDirectory(dir=TMP_DIR.value) as tmp:
    if FORMAT.value == 'csv' and FILES.value == 1 and ROWS.value <= WRITE_PIECE_ROWS:
      path = os.path.join(tmp, 'taobao.csv')
      synthetic.write_csv(path, ROWS.value, seed=0, split='benchmark')
    else:
      path = write_files(tmp, ROWS.value, FILES.value, FORMAT.value)
    columnar.release_heap()  # the writer's freed memory is not the build's
    os.sync()  # nor is writing its files back to disk: a build reads files already written
    data, rates = cache_rates(config, path, os.path.join(tmp, 'cache'), peak)
    result.update(rates)
    if COMPARE_GRAIN.value:
      result.update(host_batch_rates(config, data))
    if configs:
      result['models'] = zoo_rates(configs, data)
    elif not INPUT_ONLY.value:
      peak.reset()
      trainer = trainer_lib.Trainer(config, input_pipeline.batch(data, np.arange(2)))
      result['embedding_rows'] = sum(
          t.shape[0] for t in jax.tree.leaves(jax.eval_shape(trainer.init_state)['params']
                                              ['embedding']))
      state, rates = train_rates(config, trainer, data)
      result.update(rates)
      if TRACE_DIR.value or FLOPS.value:
        result.update(cost_analysis(trainer, state, data))
      result['train_peak_anon_gb'] = peak.gb()  # training and its input
      result.update(eval_rate(trainer, state, data))
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
