"""Roles are declared once: every variable carries its logical axes from where it is created,
and L2, the bf16 cast and the lazy optimizer read a leaf's role from them, not its path."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import mmoe
import mmoe_backbone
import test_optimizer
from conftest import ROOT
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.builder import build_model
from mmoe_jax.config import load_config, validate
from mmoe_jax.models import DnnSpec, FeatureSpec, MMoE, TowerSpec
from mmoe_jax.training import losses, precision
from mmoe_jax.training import optimizer as optimizer_lib
from test_model import random_features

# The roles' axes, as declared (design.md, "Scale"): PartitionSpecs of logical names.
TABLE, KERNEL, UNITS = P('vocab', 'embed'), P('embed', 'mlp'), P('mlp')
STACKED_KERNEL, STACKED_UNITS = P('expert', 'embed', 'mlp'), P('expert', 'mlp')


def builtin_with_bn():
  config = mmoe.get_config('tiny')
  config.model_config.mmoe.expert_dnn.use_bn = True
  for tower in config.model_config.mmoe.task_towers:
    tower.dnn.use_bn = True
  return build_model(validate(config))


def backbone_with_bn_and_layer_norm():
  config = mmoe_backbone.get_config('tiny,bn')
  config.model_config.backbone.blocks[0].input_layer.do_layer_norm = True
  return build_model(validate(config))


def expert_list():
  features = (FeatureSpec('a', 'id', 'a', 7, 4), FeatureSpec('b', 'tag', 'b', 5, 4),
              FeatureSpec('v', 'dense', 'v', 1, 4))  # a field embedding: one row
  return MMoE(features=features, expert_dnn=DnnSpec(), num_expert=2,
              task_towers=(TowerSpec('t', dnn=DnnSpec((4,))),),
              experts=(('e1', DnnSpec((8, 4), use_bn=False)), ('e2', DnnSpec((4,)))))


def inputs(model):
  out = random_features(model, 4)
  for spec in model.features:
    if spec.kind == 'dense':
      out[spec.feature_name] = jnp.linspace(0, 1, 4)
  return out


def declared(model):
  variables = model.init({'params': jax.random.PRNGKey(0)}, inputs(model))
  return nn.meta.unbox(variables), sharding_lib.declared_axes(variables)


def by_path(tree):
  return {tuple(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize('make', [builtin_with_bn, backbone_with_bn_and_layer_norm, expert_list])
def test_every_variable_declares_axes_of_its_rank(make):
  variables, axes = declared(make())
  assert jax.tree.structure(variables) == jax.tree.structure(axes)
  assert 'batch_stats' in variables  # statistics declare theirs too
  for (path, leaf), logical in zip(jax.tree_util.tree_leaves_with_path(variables),
                                   jax.tree.leaves(axes)):
    assert len(logical) == leaf.ndim and None not in logical, jax.tree_util.keystr(path)


@pytest.mark.parametrize('name', ['esmm', 'ple', 'dbmtl', 'simple_multi_task'])
def test_the_multi_task_family_declares_every_axis(name):
  config = load_config(os.path.join(ROOT, 'configs', f'{name}.py:tiny'))
  variables, axes = declared(build_model(validate(config)))
  assert jax.tree.structure(variables) == jax.tree.structure(axes)
  for (path, leaf), logical in zip(jax.tree_util.tree_leaves_with_path(variables),
                                   jax.tree.leaves(axes)):
    assert len(logical) == leaf.ndim and None not in logical, jax.tree_util.keystr(path)


def test_builtin_mmoe_declares_each_role():
  variables, axes = declared(builtin_with_bn())
  params, stats = by_path(axes['params']), by_path(axes['batch_stats'])
  for name in ('user_id', 'pid', 'tag_brand_list'):
    assert params[('embedding', name)] == TABLE
  assert params[('expert_dnn', 'dnn_0', 'kernel')] == STACKED_KERNEL
  assert params[('expert_dnn', 'dnn_0', 'bias')] == STACKED_UNITS
  assert params[('expert_dnn', 'bn_0', 'scale')] == STACKED_UNITS
  assert stats[('expert_dnn', 'bn_0', 'mean')] == STACKED_UNITS
  assert stats[('expert_dnn', 'bn_0', 'var')] == STACKED_UNITS
  assert stats[('tower_ctr', 'bn_0', 'mean')] == UNITS
  for kernel in (('gate_ctr', 'kernel'), ('tower_cvr', 'dnn_0', 'kernel'),
                 ('output_ctr', 'kernel')):
    assert params[kernel] == KERNEL
  assert params[('gate_ctr', 'bias')] == params[('output_cvr', 'bias')] == UNITS


def test_a_variable_without_axes_is_an_error_naming_it():
  class Undeclared(nn.Module):
    @nn.compact
    def __call__(self, x):
      return x * self.param('w', nn.initializers.ones, (3,))

  with pytest.raises(ValueError, match=r"\['params'\]\['w'\]: created without logical axes"):
    sharding_lib.declared_axes(Undeclared().init(jax.random.PRNGKey(0), jnp.ones(3)))


def test_kernel_l2_is_the_sum_over_the_dense_layers_kernels():
  """EasyRec's l2_regularization regularizes its dense layers' kernels: the experts', SENet's,
  the gates', the towers' and the outputs'; not biases, norms or tables."""
  variables, axes = declared(backbone_with_bn_and_layer_norm())
  p = variables['params']
  blocks = p['backbone']
  kernels = ([blocks['mmoe']['expert_mlp'][f'dnn_{i}']['kernel'] for i in range(2)]
             + [blocks['senet'][w]['kernel'] for w in ('W1', 'W2')]
             + [blocks['mmoe'][f'gate_{k}']['kernel'] for k in range(2)]
             + [p[f'tower_{t}']['dnn_0']['kernel'] for t in ('ctr', 'cvr')]
             + [p[f'output_{t}']['kernel'] for t in ('ctr', 'cvr')])
  want = sum(np.sum(np.square(np.asarray(k, np.float64))) / 2 for k in kernels)
  np.testing.assert_allclose(losses.kernel_l2(p, axes['params']), want, rtol=1e-6)


def test_roles_come_from_axes_not_names():
  """A leaf named 'kernel' under 'embedding' declared a table is a table; any leaf declared
  a kernel is one, whatever its name."""
  table, kernel, bias = jnp.full((4, 2), 1.0), jnp.full((2, 3), 2.0), jnp.full((3,), 3.0)
  params = {'embedding': {'kernel': table}, 'lookup': {'w': kernel, 'b': bias}}
  axes = {'embedding': {'kernel': TABLE},
          'lookup': {'w': KERNEL, 'b': UNITS}}
  np.testing.assert_allclose(losses.kernel_l2(params, axes), 6 * 4 / 2)
  cast = precision.compute_params(params, axes, jnp.bfloat16)
  assert cast['embedding']['kernel'].dtype == jnp.float32
  assert cast['lookup']['w'].dtype == cast['lookup']['b'].dtype == jnp.bfloat16


@pytest.mark.parametrize('make', [builtin_with_bn, expert_list])
def test_bf16_cast_leaves_exactly_the_tables_fp32(make):
  variables, axes = declared(make())
  cast = by_path(precision.compute_params(variables['params'], axes['params'], jnp.bfloat16))
  for path, logical in by_path(axes['params']).items():
    want = jnp.float32 if logical[0] == 'vocab' else jnp.bfloat16
    assert cast[path].dtype == want, path


@pytest.mark.parametrize('name', sorted(set(optimizer_lib.OPTIMIZERS) - {'lazy_adam_optimizer'}))
def test_every_optimizers_state_takes_its_params_axes(name):
  """Each moment leaf has the axes of the parameter it belongs to; counts are replicated."""
  params = {'embedding': {'t': jnp.zeros((4, 2))},
            'd': {'kernel': jnp.zeros((2, 3)), 'bias': jnp.zeros(3)}}
  axes = {'embedding': {'t': TABLE}, 'd': {'kernel': KERNEL, 'bias': UNITS}}
  opt = optimizer_lib.Optimizer(test_optimizer.train_config(name), (), param_axes=axes)
  state = jax.eval_shape(opt.init, params)
  state_axes = opt.state_axes(state)
  want = {path[-2:]: logical for path, logical in by_path(axes).items()}
  for (path, leaf), logical in zip(jax.tree_util.tree_leaves_with_path(state),
                                   jax.tree.leaves(state_axes)):
    keys = tuple(getattr(k, 'key', None) for k in path[-2:])
    assert logical == (want[keys] if leaf.ndim else P()), jax.tree_util.keystr(path)
