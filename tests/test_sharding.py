"""Sharding from config.sharding: config checks and layouts here (one device); the
8-device checks in their own process (tests/eight_devices.py)."""

import os

import jax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import mmoe
from conftest import run_under_eight_devices
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import ConfigError, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('field, value, message', [
    ('mesh_shape', (-1,), r'sharding\.mesh_axes, sharding\.mesh_shape: .*one size each'),
    ('mesh_shape', (-1, -1), r'sharding\.mesh_shape: .*at most one is -1'),
    ('vocab', ('data', 'modle'), r"sharding\.vocab\[1\]: unknown mesh axis 'modle' "
                                 r"\(did you mean 'model'\?\)"),
    ('batch', ('data', 'data'), r'sharding\.batch: a mesh axis is repeated'),
])
def test_bad_sharding_config_names_the_field(field, value, message):
  config = mmoe.get_config('tiny')
  config.sharding[field] = value
  with pytest.raises(ConfigError, match=message):
    validate(config)


def test_mesh_needs_enough_devices():
  config = mmoe.get_config('tiny')
  config.sharding.mesh_shape = (jax.device_count() + 1, 1)
  with pytest.raises(ValueError, match=r'sharding\.mesh_shape: .* needs \d+ devices'):
    sharding_lib.make_mesh(validate(config).sharding)


def test_replica_axis_is_prepended_and_leaves_inner_dims():
  config = mmoe.get_config('tiny')
  config.sharding.replica = ('data',)
  config = validate(config)
  mesh = sharding_lib.make_mesh(config.sharding)
  tree = {'table': NamedSharding(mesh, P(('data', 'model'), None)),
          'kernel': NamedSharding(mesh, P('model', None)), 'step': NamedSharding(mesh, P())}
  out = sharding_lib.with_replica_axis(tree, config.sharding, num_replicas=jax.device_count())
  assert out['table'].spec == P(('data',), 'model', None)
  assert out['kernel'].spec == P(('data',), 'model', None)
  assert out['step'].spec == P(('data',))


def test_on_eight_fake_devices():
  """tests/eight_devices.py under 8 fake CPU devices: layouts (optimizer state too),
  numerics, HLO, restore 8 -> 4 and 4 -> 8 with Adam and lazy Adam."""
  run_under_eight_devices('eight_devices.py', passed=11)
