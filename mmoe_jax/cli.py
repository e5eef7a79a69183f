"""What every script shares: the --config flag and logging."""

import logging

from absl import app, flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file: a .py with get_config(arg), as path.py[:arg].',
    lock_config=True)


def run(main):
  """Runs `main()` as an absl app after flags are parsed; logs go to stderr."""

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(message)s')
    logging.getLogger('mmoe_jax').setLevel(logging.INFO)
    logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save chatter
    from mmoe_jax import sharding  # pylint: disable=g-import-not-at-top (jax after flags)
    sharding.initialize_distributed()  # a multi-host run, when the environment says so
    main()

  flags.mark_flags_as_required(['config'])
  app.run(_main)
