"""orbax checkpoints of the whole train state under <model_dir>/checkpoints."""

import os

import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the newest keep_checkpoint_max states; each save is atomic (orbax writes a
  temporary directory and renames it), so a run killed mid-save keeps the previous one."""

  def __init__(self, model_dir, keep_checkpoint_max):
    self.directory = os.path.abspath(os.path.join(model_dir, 'checkpoints'))
    # Synchronous saves: the train step donates the state's buffers, so the arrays must
    # be written before the next step may reuse them.
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoint_max, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, state):
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore_latest(self, abstract_state):
    """The newest saved state shaped like `abstract_state`, or None if there is none."""
    step = self._manager.latest_step()
    if step is None:
      return None
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def wait(self):
    self._manager.wait_until_finished()
