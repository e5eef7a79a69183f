"""What a training run writes besides checkpoints: metrics.jsonl and TensorBoard events."""

import json
import os


def record_eval(model_dir, writer, step, result):
  """Adds the evaluation of `step` to metrics.jsonl, one row per step: a step evaluated
  again (a resumed run redoing it) replaces its row, so the file holds the latest."""
  path = os.path.join(model_dir, 'metrics.jsonl')
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      rows = [line for line in f if line.strip() and json.loads(line)['step'] != step]
  rows.append(json.dumps(dict(step=step, **result)) + '\n')
  with open(f'{path}.tmp', 'w') as f:  # a kill mid-write leaves the old file whole
    f.writelines(rows)
  os.replace(f'{path}.tmp', path)
  writer.scalars('eval', step, result)


def eval_steps(model_dir):
  """The steps that metrics.jsonl holds an evaluation of."""
  path = os.path.join(model_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    return {json.loads(line)['step'] for line in f if line.strip()}


def eval_results(model_dir):
  """{step: metrics} of every evaluation metrics.jsonl holds."""
  path = os.path.join(model_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {row.pop('step'): row for row in rows}


class SummaryWriters:
  """TensorBoard event files: model_dir for training, model_dir/eval_val for evaluation."""

  def __init__(self, model_dir):
    from tensorboardX import SummaryWriter  # imported here: only training writes events
    self._writers = {'train': SummaryWriter(model_dir),
                     'eval': SummaryWriter(os.path.join(model_dir, 'eval_val'))}

  def scalars(self, kind, step, values):
    for name, value in values.items():
      self._writers[kind].add_scalar(name, value, step)
    self._writers[kind].flush()

  def close(self):
    for w in self._writers.values():
      w.close()
