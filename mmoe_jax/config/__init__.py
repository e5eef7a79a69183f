"""Config: EasyRec's pipeline tree as ml_collections, completed and validated once."""

import importlib.util
import os
import types

from mmoe_jax.config.backbone import block_order, input_block
from mmoe_jax.config.complete import ConfigError, complete
from mmoe_jax.config.easyrec import load_pipeline
from mmoe_jax.config.validate import (feature_dim, model_params, optimizer_name, relation_order,
                                      task_towers, validate, vocab_size)
from mmoe_jax.config.validate import loss_keys_of


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


def variant_dir(base, arg, defaults, named=()):
  """A config variant's default model_dir: `base`, then `_` and each `:arg` value that
  differs from its default (a bool as its name, others as name + value), in the order of
  `defaults`, so that `:full` and `:tiny` never resume each other's checkpoints. `named`:
  args that `base` already spells out, or that do not change the run (a data location).

  >>> variant_dir('experiments/mmoe', parse_arg('tiny,scale=10', full=False, tiny=False,
  ...             scale=1), dict(full=False, tiny=False, scale=1))
  'experiments/mmoe_tiny_scale10'
  """
  parts = []
  for key, default in defaults.items():
    value = getattr(arg, key)
    if key in named or value == default:
      continue
    if isinstance(default, bool):
      parts.append(key if value else f'no_{key}')
    else:
      parts.append(f'{key}{value}'.replace(os.sep, '-'))
  return '_'.join([base] + parts)


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
           'parse_arg', 'load_config', 'import_config', 'load_pipeline', 'variant_dir']
