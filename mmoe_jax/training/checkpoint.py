"""orbax checkpoints of the whole train state under <model_dir>/checkpoints.

Arrays are saved sharded (each process writes its shards) and restored straight into the
layout of the restoring run's mesh, which may have another device count.
"""

import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from mmoe_jax.sharding import is_table

log = logging.getLogger('mmoe_jax')


class Checkpointer:
  """Keeps the newest keep_checkpoint_max states (0: every one, as TF's Saver that EasyRec
  uses); each save is atomic (orbax writes a temporary directory and renames it), so a run
  killed mid-save keeps the previous one."""

  def __init__(self, model_dir, keep_checkpoint_max, directory=None):
    """directory: the checkpoints' directory, if not <model_dir>/checkpoints."""
    self.directory = os.path.abspath(directory or os.path.join(model_dir, 'checkpoints'))
    # Synchronous saves: the train step donates the state's buffers, so the arrays must
    # be written before the next step may reuse them.
    self._manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoint_max or None,
                                             create=True, enable_async_checkpointing=False))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, state):
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore_latest(self, abstract_state, axes=None, vocab_rows=None, step=None):
    """The newest saved state shaped and sharded like `abstract_state`, or None.

    axes: the state's logical axes (a tree like it); vocab_rows: {table name: vocabulary
    rows}. A leaf whose axes make it a table (a table or its optimizer state, named by the
    table) saved with other zero padding rows, for another device count, is restored with
    this run's padding; any other difference in shape is an error. step: this one, not
    the newest.
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    # Saved shapes by dotted path (the metadata holds lists and dicts where the state has
    # tuples and optax's named tuples, so the trees are matched by path, not structure).
    saved = {_dotted(path): leaf.shape for path, leaf in
             jax.tree_util.tree_leaves_with_path(self._manager.item_metadata(step))}
    resized = []
    leaves = jax.tree_util.tree_leaves_with_path(abstract_state)
    logical = jax.tree.leaves(axes) if axes is not None else [()] * len(leaves)
    for (path, want), leaf_axes in zip(leaves, logical):
      have = saved.get(_dotted(path))
      if have is None or tuple(have) == tuple(want.shape):
        continue  # a missing leaf: orbax's own error names it
      rows = (vocab_rows or {}).get(path[-1].key) if is_table(leaf_axes) else None
      if (rows is None or tuple(want.shape[1:]) != tuple(have[1:])
          or min(want.shape[0], have[0]) < rows):
        raise ValueError(f'checkpoint {self.directory}/{step}: {_dotted(path)} has shape '
                         f'{tuple(have)}, this config needs {tuple(want.shape)}')
      resized.append(f'{_dotted(path)}: {have[0]} -> {want.shape[0]} rows '
                     f'({rows} of the vocabulary, the rest zero padding)')
    for line in resized:  # padding rows are zero: only they are dropped or added
      if line.startswith('params.'):  # (their optimizer state is resized alike)
        log.info('restoring %s', line)
    return self._manager.restore(
        step, args=ocp.args.StandardRestore(abstract_state, strict=not resized))

  def wait(self):
    self._manager.wait_until_finished()


def restore_or_fail(config, trainer, path=None):
  """The latest checkpoint of model_dir, or the one at `path` (see locate)."""
  if path:
    directory, step = locate(path)
    ckpt = Checkpointer(config.model_dir, 0, directory=directory)
    return ckpt.restore_latest(trainer.abstract_state(), trainer.state_axes, trainer.vocab_rows,
                               step=step)
  ckpt = Checkpointer(config.model_dir, config.train_config.keep_checkpoint_max)
  state = restore(ckpt, trainer)
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first '
                            '(scripts/train.py with the same config)')
  return state


def locate(path):
  """(checkpoints directory, step) of a path naming a checkpoint: a run's model_dir or
  best_ckpt/ (its newest checkpoint), a checkpoints/ directory (likewise), or one step's
  directory (checkpoints/<step>)."""
  path = os.path.abspath(path.rstrip(os.sep))
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    path = os.path.join(path, 'checkpoints')
  if os.path.basename(path).isdigit() and os.path.isdir(path):
    return os.path.dirname(path), int(os.path.basename(path))
  steps = [int(d) for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
  if not steps:
    raise FileNotFoundError(f'{path}: no checkpoint there (a model_dir, its checkpoints/ or '
                            'best_ckpt/, or one checkpoint step directory)')
  return path, max(steps)


def warm_start(state, path, optimizer_state=False):
  """EasyRec's fine_tune_checkpoint: `state` (a fresh one) with every parameter and batch
  statistic of the checkpoint at `path` (see locate) whose name and shape match; the step
  stays 0, and the optimizer state is taken only if `optimizer_state`. Logs what it took
  and what it skipped (another shape, or absent from the checkpoint)."""
  directory, step = locate(path)
  manager = ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler())
  saved = {_dotted(p): leaf for p, leaf in
           jax.tree_util.tree_leaves_with_path(manager.item_metadata(step))}
  parts = ('params', 'batch_stats') + (('opt_state',) if optimizer_state else ())
  take, skipped, absent = {}, [], []
  for p, leaf in jax.tree_util.tree_leaves_with_path(state):
    name = _dotted(p)
    if not name.startswith(tuple(f'{part}.' for part in parts)):
      continue
    if name not in saved:
      absent.append(name)
    elif tuple(saved[name].shape) != tuple(leaf.shape):
      skipped.append(f'{name}: checkpoint {tuple(saved[name].shape)}, this model '
                     f'{tuple(leaf.shape)}')
    else:
      take[name] = leaf
  saved_values = manager.restore(step, args=ocp.args.StandardRestore())
  values = {_dotted(p): v for p, v in jax.tree_util.tree_leaves_with_path(saved_values)
            if _dotted(p) in take}
  log.info('fine_tune_checkpoint %s/%d: restored %d arrays (%s), skipped %d of another shape, '
           '%d not in the checkpoint%s', directory, step, len(take),
           ', '.join(parts), len(skipped), len(absent),
           '' if optimizer_state else '; optimizer state not taken')
  for line in skipped:
    log.warning('fine_tune_checkpoint: skipped %s', line)
  for name in absent:
    log.info('fine_tune_checkpoint: not in the checkpoint, initialized: %s', name)
  manager.close()
  return jax.tree_util.tree_map_with_path(
      lambda p, leaf: (jax.device_put(np.asarray(values[_dotted(p)], leaf.dtype), leaf.sharding)
                       if _dotted(p) in values else leaf), state)


def restore(ckpt, trainer):
  """The latest checkpoint laid out on this run's mesh (any device count), or None."""
  return ckpt.restore_latest(trainer.abstract_state(), trainer.state_axes, trainer.vocab_rows)


def _dotted(path):
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)
