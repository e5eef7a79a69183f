"""What a training run writes besides checkpoints: metrics.jsonl and TensorBoard events."""

import json
import os


def record_eval(model_dir, writer, step, result):
  with open(os.path.join(model_dir, 'metrics.jsonl'), 'a') as f:
    f.write(json.dumps(dict(step=step, **result)) + '\n')
  writer.scalars('eval', step, result)


def eval_steps(model_dir):
  """The steps that metrics.jsonl holds an evaluation of."""
  path = os.path.join(model_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    return {json.loads(line)['step'] for line in f if line.strip()}


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
