"""orbax checkpoints of the whole train state under <model_dir>/checkpoints.

Arrays are saved sharded (each process writes its shards) and restored straight into the
layout of the restoring run's mesh, which may have another device count.
"""

import logging
import os

import jax
import orbax.checkpoint as ocp

from mmoe_jax.sharding import is_table

log = logging.getLogger('mmoe_jax')


class Checkpointer:
  """Keeps the newest keep_checkpoint_max states (0: every one, as TF's Saver that EasyRec
  uses); each save is atomic (orbax writes a temporary directory and renames it), so a run
  killed mid-save keeps the previous one."""

  def __init__(self, model_dir, keep_checkpoint_max):
    self.directory = os.path.abspath(os.path.join(model_dir, 'checkpoints'))
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

  def restore_latest(self, abstract_state, axes=None, vocab_rows=None):
    """The newest saved state shaped and sharded like `abstract_state`, or None.

    axes: the state's logical axes (a tree like it); vocab_rows: {table name: vocabulary
    rows}. A leaf whose axes make it a table (a table or its optimizer state, named by the
    table) saved with other zero padding rows, for another device count, is restored with
    this run's padding; any other difference in shape is an error.
    """
    step = self._manager.latest_step()
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


def restore_or_fail(config, trainer):
  ckpt = Checkpointer(config.model_dir, config.train_config.keep_checkpoint_max)
  state = restore(ckpt, trainer)
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first '
                            '(scripts/train.py with the same config)')
  return state


def restore(ckpt, trainer):
  """The latest checkpoint laid out on this run's mesh (any device count), or None."""
  return ckpt.restore_latest(trainer.abstract_state(), trainer.state_axes, trainer.vocab_rows)


def _dotted(path):
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)
