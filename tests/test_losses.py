"""Losses and regularization against hand formulas (schedules: test_schedules.py)."""

import jax
import jax.numpy as jnp
import numpy as np

import mmoe
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import complete, schema, validate
from mmoe_jax.builder import build_model
from mmoe_jax.training import losses
from test_model import init, random_features


def tower(**kw):
  return complete(dict(tower_name='t', label_name='y', **kw), schema.TASK_TOWER)


def test_sigmoid_cross_entropy_is_weighted_mean():
  logits, labels = np.array([0.3, -1.2, 2.0, 0.0]), np.array([1.0, 0.0, 0.0, 1.0])
  p = 1 / (1 + np.exp(-logits))
  expected = 2.5 * np.mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
  name, value = losses.task_loss(jnp.array(logits), jnp.array(labels), tower(weight=2.5))
  assert name == 'cross_entropy_loss_t'
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_softmax_cross_entropy_for_num_class_above_one():
  logits, labels = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), np.array([1, 2])
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.mean(logp[np.arange(2), labels])
  _, value = losses.task_loss(jnp.array(logits), jnp.array(labels, jnp.float32), tower(num_class=3))
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_l2_loss_is_mean_squared_error():
  name, value = losses.task_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]),
                                 tower(loss_type='L2_LOSS'))
  assert name == 'l2_loss_t'
  np.testing.assert_allclose(value, (1 + 4) / 2)


def test_total_loss_with_regularization_matches_hand_formula():
  config = validate(mmoe.get_config('tiny'))
  model = build_model(config)
  features = random_features(model, 16)
  variables = init(model, features)
  params = variables['params']
  labels = {'clk': jnp.array(np.arange(16) % 2, jnp.float32), 'buy': jnp.zeros(16)}
  logits, aux = model.apply(variables, features)
  towers = config.model_config.mmoe.task_towers
  axes = sharding_lib.declared_axes(model.init({'params': jax.random.PRNGKey(0)}, features))
  total, terms = losses.total_loss(logits, aux, params, axes['params'], labels, towers, 1e-3,
                                   5e-2)

  kernels = [params['expert_dnn'][f'dnn_{i}']['kernel'] for i in range(2)]
  for t in ('ctr', 'cvr'):
    kernels += [params[f'gate_{t}']['kernel'], params[f'tower_{t}']['dnn_0']['kernel'],
                params[f'output_{t}']['kernel']]
  l2 = sum(float(np.sum(np.square(k))) / 2 for k in kernels)
  # Embedding regularization is on the looked-up (and tag-pooled) vectors of the batch.
  import reference
  emb = reference.embed(features, model.features, params['embedding'])
  emb_l2 = sum(float(np.sum(np.square(e))) / 2 for e in emb)
  np.testing.assert_allclose(terms['regularization_loss'], 1e-3 * l2 + 5e-2 * emb_l2, rtol=1e-4)
  task = sum(float(terms[f'cross_entropy_loss_{t}']) for t in ('ctr', 'cvr'))
  np.testing.assert_allclose(total, task + float(terms['regularization_loss']), rtol=1e-5)
  assert set(terms) == {'cross_entropy_loss_ctr', 'cross_entropy_loss_cvr',
                        'regularization_loss', 'total_loss'}
