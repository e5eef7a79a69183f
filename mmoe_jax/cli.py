"""What every script shares: the --config flag and logging."""

import logging

from absl import app, flags
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from mmoe_jax.config import load_config


class ConfigFileParser(ConfigFileFlagParser):
  """ml_collections' config-file parser that also reads EasyRec pipeline configs.

  A path ending in .py is a config file with get_config(arg), as path.py[:arg]; any
  other path is an EasyRec pipeline config (protobuf text format). Either way the
  result is a ConfigDict, so `--config.a.b=value` overrides work the same on both.
  """

  def parse(self, path):
    if path.partition(':')[0].endswith('.py'):
      return super().parse(path)
    config = load_config(path)
    config.lock()
    return config


def define_config_flag(flag_values=flags.FLAGS, sys_argv=None):
  """Defines --config (and its --config.* overrides) in `flag_values`."""
  holder = config_flags.DEFINE_config_file(
      'config', None, 'Config file: a .py with get_config(arg), as path.py[:arg], or an '
      'EasyRec pipeline config (protobuf text format, e.g. pipeline.config).',
      flag_values=flag_values, lock_config=True, sys_argv=sys_argv)
  flag_values['config'].parser = ConfigFileParser('config')
  return holder


CONFIG = define_config_flag()


def define_resume_flags():
  """--fresh and --accept_config (scripts/train.py): what to do when model_dir records a
  config that differs in fields a resumed run may not change (training/run_dir.py)."""
  fresh = flags.DEFINE_bool(
      'fresh', False, 'Start a new run in model_dir: its previous contents are moved to '
      '<model_dir>.old-<time>, nothing is deleted.')
  accept = flags.DEFINE_bool(
      'accept_config', False, "Continue from model_dir's checkpoint with this config, even "
      'where it differs from the recorded one (each difference is logged), and record it.')
  return fresh, accept


def define_use_given_config_flag():
  """--use_given_config (scripts/evaluate.py, predict.py)."""
  return flags.DEFINE_bool(
      'use_given_config', False, 'Build the model from --config, not from the config '
      'recorded in model_dir (config.json) by the run that trained it.')


def run(main, config_required=True):
  """Runs `main()` as an absl app after flags are parsed; logs go to stderr. --config is
  required unless `config_required` is false (main checks it then)."""

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(message)s')
    logging.getLogger('mmoe_jax').setLevel(logging.INFO)
    logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save chatter
    from mmoe_jax import sharding  # pylint: disable=g-import-not-at-top (jax after flags)
    sharding.initialize_distributed()  # a multi-host run, when the environment says so
    main()

  if config_required:
    flags.mark_flags_as_required(['config'])
  app.run(_main)
