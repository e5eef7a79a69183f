"""The training loop behind scripts/train.py: train (or resume) as the config says,
checkpoint, evaluate, log."""

import json
import logging
import os
import time

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.data import signals
from mmoe_jax.training import cadence as cadence_lib
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import evaluation, exporter, input_pipeline, run_dir, writers
from mmoe_jax.training.input_pipeline import BatchSampler, batch
from mmoe_jax.training.trainer import Trainer

log = logging.getLogger('mmoe_jax')


def train_and_evaluate(config, fresh=False, accept_config=False):
  """Trains as `config` says (resuming from model_dir), evaluates; returns final metrics.

  model_dir is locked and records the config meanwhile (run_dir.open_run, which says what
  `fresh` and `accept_config` do when the record differs).
  """
  run = run_dir.open_run(validate(config), fresh=fresh, accept_config=accept_config)
  try:
    return _train_and_evaluate(run.config)
  finally:
    run.close()


def _train_and_evaluate(config):
  lead = jax.process_index() == 0  # multi-host: process 0 writes the logs and metrics
  os.makedirs(config.model_dir, exist_ok=True)
  for turn in ('lead', 'rest'):  # the synthetic files and caches are written once
    if lead == (turn == 'lead'):
      train_data, eval_data, oracle = data_lib.datasets(config, log=log.info)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'input written: {turn}')
  batch_size = config.data_config.batch_size
  sharded = data_lib.file_sharded(config)
  # After the turns: under file_shard every process takes part in these.
  eval_data = eval_data and evaluation.limit_eval(eval_data, config, sharded)
  if sharded:
    train_data = signals.merge_sessions(train_data, evaluation.gather_values,
                                        jax.process_index())
  num_steps = total_steps(config, all_rows(train_data.num_rows, sharded))

  trainer = Trainer(config, example=batch(train_data, np.arange(min(batch_size, 2))))
  ckpt = checkpoint_lib.Checkpointer(config.model_dir, config.train_config.keep_checkpoint_max)
  for line in trainer.layout():
    log.info('%s', line)
  state = checkpoint_lib.restore(ckpt, trainer) or _initial_state(trainer, config)
  state = run_dir.resume_learning_rate(state, config)
  start = int(state['step'])
  if start:
    log.info('resumed from %s at step %d', ckpt.directory, start)
  writer = writers.SummaryWriters(config.model_dir) if lead else None
  result = {}
  exporters = exporter.Exporters(config, ckpt, lead)
  if eval_data is not None and _eval_missing(config.model_dir, start, lead):
    # Killed between this checkpoint and its evaluation: evaluate it now.
    log.info('evaluating the step-%d checkpoint, whose evaluation is missing', start)
    result = _evaluate(trainer, state, eval_data, oracle, config, writer, start, log.info)
  sampler = train_sampler(config, train_data.num_rows, sharded)
  train_input = input_pipeline.make(config, trainer, train_data, sampler)
  log.info('input_mode %s', train_input.mode)
  cadence = cadence_lib.Cadence(config.train_config, num_steps)
  if _early_stop(config, lead):  # a rerun of a run that stopped early stays stopped
    num_steps = start
  divergence = cadence_lib.DivergenceWarning(trainer.towers, train_data.labels)
  # The log line's train AUC: as many rows as one eval batch, so that it reuses the compiled
  # eval prediction; its own sampler (a pure function of seed and step) is not shared with
  # the input pipeline's threads.
  recent = train_sampler(config, train_data.num_rows, sharded)
  recent_rows = min(config.data_config.eval_batch_size,
                    all_rows((train_data if eval_data is None else eval_data).num_rows, sharded))
  if sharded:  # each process's share of them (its eval rows may be few or none: num_examples)
    recent_rows = -(-recent_rows // jax.process_count())
  bar = tqdm.tqdm(total=num_steps * batch_size, initial=start * batch_size, unit='ex',
                  unit_scale=True, desc='train', dynamic_ncols=True, mininterval=1.0,
                  disable=not lead)
  last_time, last_step = time.perf_counter(), start
  # Each chunk of steps ends on or before the next log or checkpoint step (input_pipeline).
  for steps in train_input.chunks(start, num_steps):
    state, step_metrics = train_input.run(state, steps)
    bar.update(len(steps) * batch_size)
    done = steps.stop
    events = cadence.events(done)
    if events:
      check_finite(state, ckpt)
    if 'log' in events:
      now = time.perf_counter()
      scalars = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      scalars['examples_per_sec'] = (done - last_step) * batch_size / (now - last_time)
      scalars.update(evaluation.recent_train_auc(trainer, state, train_data, recent, done,
                                                 recent_rows, sharded))
      # examples/s counts training steps only
      last_time, last_step = time.perf_counter(), done
      if lead:
        divergence.check(done, scalars['total_loss'])
        bar.write(f'step {done}: ' + ' '.join(f'{k}={v:.5g}' for k, v in scalars.items()),
                  file=bar.fp)
        writer.scalars('train', done, scalars)
    if 'save' in events:
      ckpt.save(done, state)
      if eval_data is not None:
        result = _evaluate(trainer, state, eval_data, oracle, config, writer, done,
                           lambda line: bar.write(line, file=bar.fp))
        exporters.after_eval(trainer, state, done, _history(config, done, result, lead))
        if _early_stop(config, lead):
          bar.write(f'early stop at step {done}: {exporter.stop_reason(config.export_config)}',
                    file=bar.fp)
          break
      last_time = time.perf_counter()  # examples/s counts training steps only
  train_input.close()
  bar.close()
  ckpt.wait()
  if lead:
    writer.close()
  if eval_data is not None and not result:  # a finished run, rerun: report it again
    result = evaluation.evaluate(trainer, state, eval_data, oracle, sharded)
  exporters.at_end(trainer, state)
  return _report(config, int(state['step']), result, lead)


def _initial_state(trainer, config):
  """A fresh state, warm-started from train_config.fine_tune_checkpoint when set."""
  state = trainer.create_state()
  train = config.train_config
  if train.fine_tune_checkpoint:
    state = checkpoint_lib.warm_start(state, train.fine_tune_checkpoint,
                                      train.fine_tune_optimizer_state)
  return state


def _history(config, step, result, lead):
  """Every evaluation of the run so far, {step: metrics}, `step`'s being `result` (from
  metrics.jsonl on process 0; the others hold only this one, which is all they use)."""
  history = writers.eval_results(config.model_dir) if lead else {}
  history[step] = result
  return history


def _early_stop(config, lead):
  """Whether export_config's early stop says to stop now; every process gets process 0's
  answer."""
  stop = lead and exporter.should_stop(writers.eval_results(config.model_dir),
                                       config.export_config)
  if jax.process_count() > 1:
    stop = bool(multihost_utils.broadcast_one_to_all(np.int32(stop)))
  return stop


def _report(config, step, result, lead):
  """The final line: the last step's metrics, or with exporter_type 'best' the best
  evaluation's; `checkpoint` says which (last or best), `checkpoint_step` its step."""
  history = writers.eval_results(config.model_dir) if lead else {}
  best = (exporter.best_step(history, config.export_config)
          if config.export_config.exporter_type == 'best' and history else None)
  if best is None:
    return dict(step=step, **result, checkpoint='last', checkpoint_step=step)
  return dict(step=step, **history[best], checkpoint='best', checkpoint_step=best)


def _evaluate(trainer, state, eval_data, oracle, config, writer, step, write):
  """Evaluates `state`; process 0 records the result (metrics.jsonl, TensorBoard) and
  `write`s it."""
  result = evaluation.evaluate(trainer, state, eval_data, oracle,
                               data_lib.file_sharded(config))
  if writer is not None:
    writers.record_eval(config.model_dir, writer, step, result)
    write(f'eval at step {step}: {json.dumps(result)}')
  return result


def _eval_missing(model_dir, step, lead):
  """Whether a resumed run's checkpoint `step` has no evaluation in metrics.jsonl (the
  run was killed between saving and evaluating it); every process gets process 0's answer."""
  missing = bool(step) and lead and step not in writers.eval_steps(model_dir)
  if jax.process_count() > 1:
    missing = bool(multihost_utils.broadcast_one_to_all(np.int32(missing)))
  return missing


def all_rows(num_rows, sharded):
  """The training rows of the run: this process's, or (file_shard) every process's."""
  if not sharded:
    return num_rows
  return int(multihost_utils.process_allgather(np.int64(num_rows)).sum())


def train_sampler(config, num_rows, sharded):
  """The batches of the run: of batch_size rows over all rows, or (file_shard) this
  process's batch_size / process_count rows of each batch, drawn from its own rows with
  its own seed (config.seed, process index), so the split and the order are exact on
  resume."""
  data_config = config.data_config
  if not sharded:
    return BatchSampler(num_rows, data_config.batch_size, config.seed, data_config.shuffle)
  count = jax.process_count()
  if data_config.batch_size % count:
    raise ValueError(f'data_config.batch_size: {data_config.batch_size} rows do not divide '
                     f'over the {count} processes that file_shard splits each batch between')
  return BatchSampler(num_rows, data_config.batch_size // count,
                      (config.seed, jax.process_index()), data_config.shuffle)


def total_steps(config, num_rows):
  """num_steps, capped by num_epochs over the data when both are set (as EasyRec)."""
  batch_size = config.data_config.batch_size
  by_epochs = config.data_config.num_epochs * -(-num_rows // batch_size)
  steps = [s for s in (config.train_config.num_steps, by_epochs) if s > 0]
  return min(steps)


def check_finite(state, ckpt):
  """Stops the run if a step's total_loss or gradient norm was not finite (Trainer.step
  records the first); the loop calls it before each checkpoint, so none holds such a state."""
  bad = cadence_lib.nonfinite(state)
  if bad:
    (step, what), = bad.values()
    last = ckpt.latest_step()
    raise FloatingPointError(
        f'{cadence_lib.nonfinite_message(step, what)}; training stopped. The last checkpoint '
        f'({"step " + str(last) if last else "none"}) is intact. Lower the learning rate, '
        'set train_config.gradient_clipping_by_norm, or check the input for extreme values.')
