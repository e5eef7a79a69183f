"""The built-in MMoE: structure, invariants and equality with a loop-over-experts reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmoe
import reference
from mmoe_jax.config import validate
from mmoe_jax.builder import build_model
from mmoe_jax.models import FeatureSpec, MMoE, DnnSpec, TowerSpec, predictions
from mmoe_jax.models.embedding import Embedding


def random_features(model, batch, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for spec in model.features:
    shape = (batch, 4) if spec.kind == 'tag' else (batch,)
    ids = rng.integers(-1, min(spec.vocab_size, 50), shape)  # includes -1 (missing/padding)
    out[spec.feature_name] = jnp.asarray(ids, jnp.int32)
  return out


def bn_config():
  """The tiny config with batch norm in experts and towers, to cover that path."""
  config = mmoe.get_config('tiny')
  config.model_config.mmoe.expert_dnn.use_bn = True
  for tower in config.model_config.mmoe.task_towers:
    tower.dnn.use_bn = True
  return validate(config)


@pytest.fixture(scope='module')
def tiny_model():
  return build_model(bn_config())


def init(model, features, seed=0):
  """model.init's variables as plain arrays (unboxed from their declared axes)."""
  return nn.meta.unbox(model.init({'params': jax.random.PRNGKey(seed)}, features))


def test_param_tree_uses_config_names_and_stacks_experts(tiny_model):
  features = random_features(tiny_model, 8)
  params = init(tiny_model, features)['params']
  assert set(params) == {'embedding', 'expert_dnn', 'gate_ctr', 'gate_cvr', 'tower_ctr',
                         'tower_cvr', 'output_ctr', 'output_cvr'}
  assert params['expert_dnn']['dnn_0']['kernel'].shape == (3, 17 * 16, 16)  # [E, D, H]
  assert params['expert_dnn']['dnn_1']['kernel'].shape == (3, 16, 8)
  assert params['gate_ctr']['kernel'].shape == (17 * 16, 3)
  assert params['embedding']['user_id'].shape == (100000, 16)


@pytest.mark.parametrize('train', [False, True])
def test_stacked_experts_match_loop_reference(tiny_model, train):
  features = random_features(tiny_model, 16)
  variables = init(tiny_model, features)
  # Non-trivial batch statistics, so that inference-mode batch norm is exercised too.
  variables['batch_stats'] = jax.tree.map(
      lambda v: v + jax.random.uniform(jax.random.PRNGKey(1), v.shape, minval=0.1, maxval=0.5),
      variables['batch_stats'])
  (logits, aux), _ = tiny_model.apply(variables, features, train=train, mutable=['batch_stats'])
  ref_logits, ref_gates = reference.mmoe(tiny_model, variables, features, train=train)
  for t in ('ctr', 'cvr'):
    np.testing.assert_allclose(logits[t], ref_logits[t], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(aux['gate_weights'][t], ref_gates[t], rtol=1e-5, atol=1e-6)


def test_gates_are_distributions_over_experts(tiny_model):
  features = random_features(tiny_model, 32)
  logits, aux = tiny_model.apply(init(tiny_model, features), features)
  for gate in aux['gate_weights'].values():
    assert gate.shape == (32, 3)
    assert np.all(np.asarray(gate) >= 0)
    np.testing.assert_allclose(gate.sum(-1), 1.0, rtol=1e-6)
  assert logits['ctr'].shape == (32,)


def test_expert_batch_norm_trains():
  # EasyRec's built-in MMoE runs expert batch norm in inference mode forever; here the
  # expert statistics move in training mode, and inference uses them.
  model = build_model(bn_config())
  features = random_features(model, 64)
  variables = init(model, features)
  _, updated = model.apply(variables, features, train=True, mutable=['batch_stats'])
  before = variables['batch_stats']['expert_dnn']['bn_0']['mean']
  after = updated['batch_stats']['expert_dnn']['bn_0']['mean']
  assert before.shape == (3, 16)  # per expert, per unit
  assert np.abs(np.asarray(after - before)).min() > 0
  # Each expert's statistics move on their own (different weights, different means).
  assert not np.allclose(after[0], after[1])


def test_embedding_missing_ids_tags_and_shared_tables():
  specs = (FeatureSpec('a', 'id', 'shared', 5, 2), FeatureSpec('b', 'id', 'shared', 5, 2),
           FeatureSpec('t', 'tag', 't', 5, 2, 'mean'), FeatureSpec('s', 'tag', 't', 5, 2, 'sum'),
           FeatureSpec('v', 'dense', 'v', 0, 0))
  emb = Embedding(specs)
  inputs = dict(a=jnp.array([1, -1]), b=jnp.array([1, 2]), t=jnp.array([[0, 2, -1], [-1, -1, -1]]),
                s=jnp.array([[0, 2, -1], [3, -1, -1]]), v=jnp.array([0.5, 2.0]))
  variables = init(emb, inputs)
  assert set(variables['params']) == {'shared', 't'}  # one table for a and b
  table, tags = variables['params']['shared'], variables['params']['t']
  a, b, t, s, v = emb.apply(variables, inputs)
  np.testing.assert_allclose(a, [table[1], np.zeros(2)])
  np.testing.assert_allclose(b, [table[1], table[2]])
  np.testing.assert_allclose(t, [(tags[0] + tags[2]) / 2, np.zeros(2)], rtol=1e-6)
  np.testing.assert_allclose(s, [tags[0] + tags[2], tags[3]], rtol=1e-6)
  np.testing.assert_allclose(v, [[0.5], [2.0]])


def test_predictions_use_easyrec_names():
  towers = (TowerSpec('ctr'), TowerSpec('price', loss_type='L2_LOSS'),
            TowerSpec('cls', num_class=3))
  logits = {'ctr': jnp.array([0.0, 2.0]), 'price': jnp.array([1.5, -1.0]),
            'cls': jnp.array([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]])}
  out = predictions(logits, towers)
  assert set(out) == {'logits_ctr', 'probs_ctr', 'y_price', 'logits_cls', 'probs_cls', 'y_cls',
                      'logits_cls_1', 'probs_cls_1', 'logits_cls_y', 'probs_cls_y'}
  np.testing.assert_allclose(out['probs_ctr'], [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)
  np.testing.assert_allclose(out['y_price'], [1.5, -1.0])
  np.testing.assert_array_equal(out['y_cls'], [2, 0])
  np.testing.assert_allclose(out['probs_cls'].sum(-1), 1.0, rtol=1e-6)


def test_tower_without_dnn_feeds_mixture_to_output():
  model = MMoE(features=(FeatureSpec('a', 'id', 'a', 10, 4),), expert_dnn=DnnSpec((6,), use_bn=False),
               num_expert=2, task_towers=(TowerSpec('t', dnn=DnnSpec(())),))
  features = {'a': jnp.array([1, 2, 3])}
  variables = init(model, features)
  assert 'tower_t' not in variables['params']
  assert variables['params']['output_t']['kernel'].shape == (6, 1)
  logits, _ = model.apply(variables, features)
  ref, _ = reference.mmoe(model, variables, features)
  np.testing.assert_allclose(logits['t'], ref['t'], rtol=1e-5, atol=1e-6)


def test_expert_list_takes_experts_of_different_shapes():
  # EasyRec's deprecated `experts` list: one DNN per expert; depths and widths may differ,
  # the last width is shared (the gates mix the outputs).
  experts = (('deep', DnnSpec((8, 6), use_bn=False)), ('wide', DnnSpec((12, 10, 6), use_bn=False)),
             ('flat', DnnSpec((6,), use_bn=False)))
  model = MMoE(features=(FeatureSpec('a', 'id', 'a', 10, 4),), expert_dnn=DnnSpec(), num_expert=3,
               task_towers=(TowerSpec('t', dnn=DnnSpec((4,), use_bn=False)),), experts=experts)
  features = {'a': jnp.array([1, 2, 3, 4])}
  params = init(model, features)['params']
  assert set(params['experts']) == {'deep', 'wide', 'flat'}
  assert params['experts']['wide']['dnn_1']['kernel'].shape == (12, 10)
  assert 'expert_dnn' not in params
  logits, aux = model.apply({'params': params}, features)
  assert logits['t'].shape == (4,) and aux['gate_weights']['t'].shape == (4, 3)
  # The mixture is the gate-weighted sum of each expert's own DNN.
  x = params['embedding']['a'][features['a']]
  outs = [reference.dnn(x, params['experts'][name], None, len(spec.hidden_units), False)
          for name, spec in experts]
  gate = aux['gate_weights']['t']
  mixed = sum(gate[:, e:e + 1] * outs[e] for e in range(3))
  hidden = reference.dnn(mixed, params['tower_t'], None, 1, False)
  out = hidden @ params['output_t']['kernel'] + params['output_t']['bias']
  np.testing.assert_allclose(logits['t'], out[:, 0], rtol=1e-5, atol=1e-6)


def test_expert_list_of_equal_experts_matches_stacked_experts():
  spec = DnnSpec((6, 5), use_bn=False)
  common = dict(features=(FeatureSpec('a', 'id', 'a', 10, 4),), expert_dnn=spec, num_expert=2,
                task_towers=(TowerSpec('t', dnn=DnnSpec((3,), use_bn=False)),))
  listed = MMoE(**common, experts=(('e1', spec), ('e2', spec)))
  stacked = MMoE(**common)
  features = {'a': jnp.array([0, 5, 9])}
  params = init(listed, features)['params']
  as_stack = dict(params)
  as_stack['expert_dnn'] = jax.tree.map(lambda a, b: jnp.stack([a, b]), params['experts']['e1'],
                                        params['experts']['e2'])
  del as_stack['experts']
  np.testing.assert_allclose(listed.apply({'params': params}, features)[0]['t'],
                             stacked.apply({'params': as_stack}, features)[0]['t'], rtol=1e-6)
