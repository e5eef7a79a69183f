"""Config: EasyRec's pipeline tree as ml_collections, completed and validated once."""

import importlib.util
import os
import types

from mmoe_jax.config.backbone import block_order, input_block
from mmoe_jax.config.complete import ConfigError, complete
from mmoe_jax.config.easyrec import load_pipeline
from mmoe_jax.config.validate import (feature_dim, model_params, optimizer_name, relation_order,
                                      task_towers, validate, vocab_size)


def parse_arg(arg, **defaults):
  """Parses a config file's `:arg` suffix (big_vision style) into typed values.

  `arg` is '' / None, or comma-separated `key=value` items and bare names; a bare
  name sets a bool default to True. Values take the type of their default.

  >>> parse_arg('full,num_steps=10', full=False, num_steps=0)
  namespace(full=True, num_steps=10)
  """
  out = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if key not in defaults:
      raise ConfigError(f'config arg {key!r}: unknown; known: {", ".join(defaults)}')
    kind = type(defaults[key])
    if not sep:
      if kind is not bool:
        raise ConfigError(f'config arg {key!r}: needs a value ({key}=...)')
      out[key] = True
    elif kind is bool:
      out[key] = value.lower() in ('1', 'true', 'yes')
    else:
      out[key] = kind(value)
  return types.SimpleNamespace(**out)


def load_config(spec):
  """Loads a config as the --config flag does (for notebooks and tests).

  `spec` is `path/to/config.py[:arg]`, or the path of an EasyRec pipeline config
  (protobuf text format; any name not ending in .py, e.g. pipeline.config).
  """
  path, _, arg = spec.partition(':')
  if not path.endswith('.py'):
    if arg:
      raise ConfigError(f'{spec}: an EasyRec pipeline config takes no :arg')
    return load_pipeline(path)
  return import_config(path).get_config(arg or None)


def import_config(path):
  """A config file as a module, for a config that builds on another one:

    mmoe = import_config(os.path.join(os.path.dirname(__file__), 'mmoe.py'))

  (--config loads a file by its path, so configs/ is not on sys.path.)
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'config file {path!r} not found')
  name = '_mmoe_jax_config_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


__all__ = ['ConfigError', 'complete', 'validate', 'vocab_size', 'feature_dim', 'model_params',
           'task_towers', 'relation_order', 'optimizer_name', 'block_order', 'input_block',
           'parse_arg', 'load_config', 'import_config', 'load_pipeline']
