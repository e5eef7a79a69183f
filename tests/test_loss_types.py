"""EasyRec's loss types (training/loss_types.py), the dice activation and the heads, against
numpy references written from the formulas (reference/mtl.md sections 7, 1.4 and 10): plain
loops over samples, pairs and sessions, in float64."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmoe
from mmoe_jax import data, metrics
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import ConfigError, complete, schema, validate
from mmoe_jax.config.validate import LOSS_PARAMS
from mmoe_jax.models.layers import Dice, Dnn, DnnSpec
from mmoe_jax.models.mmoe import head
from mmoe_jax.training import losses
from mmoe_jax.training.loss_types import LOSS_TYPES, loss_key, loss_value

B = 10
RNG = np.random.default_rng(0)
Z = RNG.normal(size=B) * 2
Y = np.array([1, 0, 0, 1, 0, 1, 1, 0, 0, 0], np.float64)
W = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 0.0, 1.5, 1.0, 3.0, 1.0])  # two zero weights
# sessions: 0 mixed, 1 all positive, 2 mixed, 3 a single negative
SESSION = np.array([0, 0, 0, 1, 2, 2, 1, 2, 2, 3], np.int32)


# ---- references, straight from the formulas -------------------------------------------

def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def bce(z, y):
  """sigmoid cross entropy of logit z against label y."""
  return y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)


def nzmean(ls, ws):
  """sum w l / #{w != 0}; 0 if no weight is non-zero."""
  count = sum(1 for w in ws if w != 0)
  return sum(w * l for w, l in zip(ws, ls)) / count if count else 0.0


def ohem(values, ratio):
  """keep the round(P ratio) largest weighted losses, drop the zeros, mean (0 if none)."""
  k = int(np.round(len(values) * ratio))  # halves to even, as tf.math.rint
  kept = [v for v in sorted(values, reverse=True)[:k] if v > 0]
  return np.mean(kept) if kept else 0.0


def pairs(y, session=None):
  return [(i, j) for i in range(len(y)) for j in range(len(y))
          if y[i] > y[j] and (session is None or session[i] == session[j])]


def focal_terms(z, y, w, gamma, alpha, ls=0.0):
  """(sigmoid CE on smoothed labels, focal weight v) per sample."""
  p = np.clip(sigmoid(z), 1e-7, 1 - 1e-7)
  p_t = y * p + (1 - y) * (1 - p)
  v = (1 - p_t) ** gamma * w
  if alpha is not None:
    v = v * (alpha * y + (1 - alpha) * (1 - y))
  return bce(z, y * (1 - ls) + ls / 2), v


def ref_focal(z, y, w, gamma=2.0, alpha=None, ohem_ratio=1.0, ls=0.0):
  terms = [focal_terms(z[i], y[i], w[i], gamma, alpha, ls) for i in range(len(z))]
  if ohem_ratio < 1:
    return ohem([l * v for l, v in terms], ohem_ratio)
  return nzmean([l for l, _ in terms], [v for _, v in terms])


def ref_pairwise_logistic(z, y, w, session=None, temperature=1.0, margin=0.0, ohem_ratio=1.0,
                          use_label_margin=False):
  ls, ws = [], []
  for i, j in pairs(y, session):
    m = (y[i] - y[j]) / temperature if use_label_margin else margin
    d = (z[i] - z[j]) / temperature - m
    ls.append(np.logaddexp(0, -d))
    ws.append(w[i])
  if ohem_ratio < 1:
    return ohem([l * v for l, v in zip(ls, ws)], ohem_ratio)
  return nzmean(ls, ws)


def ref_pairwise_focal(z, y, w, session=None, gamma=2.0, alpha=None, hinge_margin=None,
                       ohem_ratio=1.0, temperature=1.0):
  d, pw = [], []
  for i, j in pairs(y, session):
    dij = (z[i] - z[j]) / temperature
    if hinge_margin is None or dij < hinge_margin:
      d.append(dij)
      pw.append(w[i])
  return ref_focal(np.array(d), np.ones(len(d)), np.array(pw), gamma, alpha, ohem_ratio)


def ref_f1(z, y, w, beta_square=1.0, ls=0.0):
  s, p = sigmoid(z).sum(), y.sum()
  neg_w = s / ((beta_square - 1) * p + s + 1e-8)
  weights = [w[i] * (1.0 if y[i] == 1 else neg_w) for i in range(len(z))]
  return nzmean([bce(z[i], y[i] * (1 - ls) + ls / 2) for i in range(len(z))], weights)


def log_softmax_at(values, k):
  values = np.asarray(values)
  return values[k] - np.log(np.sum(np.exp(values - values.max()))) - values.max()


def ref_jrc(z, y, w, session, alpha=0.5, same_label_loss=True):
  """alpha ce + (1 - alpha) ge, ge from a loop over sessions (mtl.md 7, JRC_LOSS)."""
  y = y.astype(int)
  ce = nzmean([-log_softmax_at(z[i], y[i]) for i in range(len(y))], w)
  ge = 0.0
  if same_label_loss:
    for s in np.unique(session):
      members = np.flatnonzero(session == s)
      loss_s = 0.0
      for k, i in enumerate(members):
        loss_s -= log_softmax_at(z[members, y[i]], k)
      ge += np.mean(w[members]) * loss_s
    ge /= len(y)
  else:
    for j in range(len(y)):
      rivals = [j] + [i for i in range(len(y)) if session[i] == session[j] and y[i] != y[j]]
      ge -= w[j] * log_softmax_at(z[rivals, y[j]], 0)
    ge /= len(y)
  return alpha * ce + (1 - alpha) * ge


def value(loss_type, z=Z, y=Y, w=W, param=None, session=None, **kw):
  param = None if param is None else complete(param, schema.LOSS.fields[LOSS_PARAMS[loss_type]])
  return float(loss_value(loss_type, jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32),
                          jnp.asarray(w, jnp.float32), param,
                          None if session is None else jnp.asarray(session), **kw))


# ---- losses ---------------------------------------------------------------------------

def test_loss_types_are_the_briefs_nine():
  assert LOSS_TYPES == {'CLASSIFICATION', 'L2_LOSS', 'SIGMOID_L2_LOSS', 'BINARY_FOCAL_LOSS',
                        'PAIR_WISE_LOSS', 'PAIRWISE_LOGISTIC_LOSS', 'PAIRWISE_FOCAL_LOSS',
                        'JRC_LOSS', 'F1_REWEIGHTED_LOSS'}


def test_pointwise_losses_are_nonzero_weight_means():
  np.testing.assert_allclose(value('CLASSIFICATION'), nzmean(bce(Z, Y), W), rtol=1e-5)
  np.testing.assert_allclose(value('L2_LOSS'), nzmean((Y - Z) ** 2, W), rtol=1e-5)
  np.testing.assert_allclose(value('SIGMOID_L2_LOSS'), nzmean((Y - sigmoid(Z)) ** 2, W),
                             rtol=1e-5)
  z3 = RNG.normal(size=(B, 3))
  y3 = np.arange(B) % 3
  expected = nzmean([-log_softmax_at(z3[i], y3[i]) for i in range(B)], W)
  got = loss_value('CLASSIFICATION', jnp.asarray(z3), jnp.asarray(y3), jnp.asarray(W))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # all weights zero: 0, as TF's safe division
  for t in ('CLASSIFICATION', 'L2_LOSS', 'BINARY_FOCAL_LOSS', 'PAIR_WISE_LOSS'):
    assert value(t, w=np.zeros(B)) == 0.0


@pytest.mark.parametrize('param', [
    None, dict(alpha=0.25), dict(gamma=0.0), dict(label_smoothing=0.2, alpha=0.75, gamma=1.5),
    dict(ohem_ratio=0.5), dict(ohem_ratio=0.25, alpha=0.3)])
def test_binary_focal_loss(param):
  p = complete(param or {}, schema.BINARY_FOCAL_LOSS)
  expected = ref_focal(Z, Y, W, p.gamma, p.get('alpha'), p.ohem_ratio, p.label_smoothing)
  np.testing.assert_allclose(value('BINARY_FOCAL_LOSS', param=param), expected, rtol=1e-5)


@pytest.mark.parametrize('session', [None, SESSION])
@pytest.mark.parametrize('param', [None, dict(margin=0.5, temperature=2.0)])
def test_pair_wise_loss(param, session):
  p = complete(param or {}, schema.PAIRWISE_LOSS)
  expected = ref_pairwise_logistic(Z, Y, W, session, p.temperature, p.margin)
  np.testing.assert_allclose(value('PAIR_WISE_LOSS', param=param, session=session), expected,
                             rtol=1e-5)


GRADED = np.array([2, 0, 1, 1, 0, 2, 1, 0, 3, 0], np.float64)


@pytest.mark.parametrize('y', [Y, GRADED])
@pytest.mark.parametrize('param', [
    None, dict(hinge_margin=0.5), dict(use_label_margin=True, temperature=2.0, hinge_margin=9.0),
    dict(ohem_ratio=0.5), dict(ohem_ratio=0.3, temperature=0.5)])
def test_pairwise_logistic_loss(param, y):
  p = complete(param or {}, schema.PAIRWISE_LOGISTIC_LOSS)
  for session in (None, SESSION):
    expected = ref_pairwise_logistic(Z, y, W, session, p.temperature, p.get('hinge_margin', 0.0),
                                     p.ohem_ratio, p.use_label_margin)
    np.testing.assert_allclose(value('PAIRWISE_LOGISTIC_LOSS', y=y, param=param, session=session),
                               expected, rtol=1e-5)


@pytest.mark.parametrize('param', [
    None, dict(hinge_margin=0.5), dict(alpha=0.3, gamma=1.0, temperature=2.0),
    dict(ohem_ratio=0.5, hinge_margin=1.0)])
def test_pairwise_focal_loss(param):
  p = complete(param or {}, schema.PAIRWISE_FOCAL_LOSS)
  for session in (None, SESSION):
    expected = ref_pairwise_focal(Z, GRADED, W, session, p.gamma, p.get('alpha'),
                                  p.get('hinge_margin'), p.ohem_ratio, p.temperature)
    np.testing.assert_allclose(value('PAIRWISE_FOCAL_LOSS', y=GRADED, param=param,
                                     session=session), expected, rtol=1e-5)


def test_pairwise_focal_margin_is_used_only_when_set():
  # the proto's hinge_margin default (1.0) would drop pairs ordered by more than 1
  unset = ref_pairwise_focal(Z, Y, W)
  assert not np.isclose(unset, ref_pairwise_focal(Z, Y, W, hinge_margin=1.0), rtol=1e-3)
  np.testing.assert_allclose(value('PAIRWISE_FOCAL_LOSS'), unset, rtol=1e-5)
  np.testing.assert_allclose(value('PAIRWISE_FOCAL_LOSS', param={}), unset, rtol=1e-5)


def test_no_pairs_give_zero():
  same = np.ones(B)
  for t, param in (('PAIR_WISE_LOSS', None), ('PAIRWISE_LOGISTIC_LOSS', None),
                   ('PAIRWISE_LOGISTIC_LOSS', dict(ohem_ratio=0.5)),
                   ('PAIRWISE_FOCAL_LOSS', None)):
    assert value(t, y=same, param=param) == 0.0
    # every sample alone in its session: no pair either
    assert value(t, param=param, session=np.arange(B)) == 0.0


@pytest.mark.parametrize('param', [None, dict(f1_beta_square=4.0, label_smoothing=0.1),
                                   dict(f1_beta_square=0.25)])
def test_f1_reweighted_loss(param):
  p = complete(param or {}, schema.F1_REWEIGHTED_LOSS)
  np.testing.assert_allclose(value('F1_REWEIGHTED_LOSS', param=param),
                             ref_f1(Z, Y, W, p.f1_beta_square, p.label_smoothing), rtol=1e-5)


def test_f1_reweighted_gradient_flows_through_the_negative_weight():
  param = complete(dict(f1_beta_square=4.0), schema.F1_REWEIGHTED_LOSS)
  grad = jax.jit(jax.grad(lambda z: loss_value('F1_REWEIGHTED_LOSS', z, jnp.asarray(Y),
                                               jnp.asarray(W), param)))(jnp.asarray(Z, jnp.float32))
  h = 1e-5
  numeric = [(ref_f1(Z + h * e, Y, W, 4.0) - ref_f1(Z - h * e, Y, W, 4.0)) / (2 * h)
             for e in np.eye(B)]
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-6)
  # the same loss with neg_w held constant has another gradient: the test can tell
  s, p = sigmoid(Z).sum(), Y.sum()
  neg_w = s / (3 * p + s + 1e-8)
  held = (W * np.where(Y == 1, 1.0, neg_w) * (sigmoid(Z) - Y)) / np.count_nonzero(W)
  assert np.abs(held - numeric).max() > 1e-3


@pytest.mark.parametrize('same_label_loss, alpha, w', [
    (True, 0.5, np.ones(B)), (True, 0.2, W), (False, 0.5, W), (False, 0.2, np.ones(B))])
def test_jrc_loss(same_label_loss, alpha, w):
  z2 = RNG.normal(size=(B, 2))
  param = complete(dict(session_name='user', alpha=alpha, same_label_loss=same_label_loss),
                   schema.JRC_LOSS)
  got = loss_value('JRC_LOSS', jnp.asarray(z2), jnp.asarray(Y, jnp.int32), jnp.asarray(w),
                   param, jnp.asarray(SESSION))
  np.testing.assert_allclose(got, ref_jrc(z2, Y, w, SESSION, alpha, same_label_loss),
                             rtol=1e-5)


def test_jrc_gradient_is_finite_despite_the_masked_softmax():
  for same_label_loss in (True, False):
    param = complete(dict(session_name='user', same_label_loss=same_label_loss), schema.JRC_LOSS)
    g = jax.jit(jax.grad(lambda z: loss_value('JRC_LOSS', z, jnp.asarray(Y, jnp.int32),
                                              jnp.asarray(W), param, jnp.asarray(SESSION))))(
        jnp.zeros((B, 2)))
    assert np.isfinite(g).all() and np.abs(g).sum() > 0


def test_jrc_random_strategies_and_errors():
  z2 = jnp.asarray(RNG.normal(size=(B, 2)))
  y, w, s = jnp.asarray(Y, jnp.int32), jnp.asarray(W), jnp.asarray(SESSION)
  ce, ge = ref_jrc(np.asarray(z2), Y, W, SESSION, 1.0), ref_jrc(np.asarray(z2), Y, W, SESSION, 0.0)
  rng = jax.random.PRNGKey(3)
  jrc = lambda strategy, **kw: loss_value('JRC_LOSS', z2, y, w, complete(
      dict(session_name='u', loss_weight_strategy=strategy), schema.JRC_LOSS), s, **kw)
  u = float(jax.random.uniform(rng))
  np.testing.assert_allclose(jrc('random_uniform', rng=rng), u * ce + (1 - u) * ge, rtol=1e-5)
  a = np.exp(jax.random.normal(rng, (2,)))
  a = a / a.sum()
  np.testing.assert_allclose(jrc('random_normal', rng=rng), a[0] * ce + a[1] * ge, rtol=1e-5)
  seen = set()
  for k in range(12):
    got = float(jrc('random_bernoulli', rng=jax.random.PRNGKey(k)))
    match = [name for name, v in (('ce', ce), ('ge', ge), ('half', (ce + ge) / 2))
             if np.isclose(got, v, rtol=1e-5)]
    assert len(match) == 1, got
    seen.add(match[0])
  assert seen == {'ce', 'ge', 'half'}
  with pytest.raises(ValueError, match="jrc_loss.loss_weight_strategy: 'random_uniform'.*rng"):
    jrc('random_uniform')
  with pytest.raises(ValueError, match='jrc_loss.loss_weight_strategy'):
    jrc('uncertainty')
  with pytest.raises(ValueError, match='jrc_loss.session_name'):
    loss_value('JRC_LOSS', z2, y, w)


def test_loss_keys():
  assert loss_key('CLASSIFICATION', '', 'ctr') == 'cross_entropy_loss_ctr'
  assert loss_key('CLASSIFICATION', 'mine', 'ctr') == 'mine'
  assert loss_key('SIGMOID_L2_LOSS', '', 'gmv') == 'l2_loss_gmv'
  assert loss_key('L2_LOSS', 'mine', 'gmv') == 'mine'
  assert loss_key('PAIR_WISE_LOSS', '', 'ctr') == 'pair_wise_loss_ctr'
  assert loss_key('JRC_LOSS', '', 'cvr') == 'jrc_loss_cvr'
  assert loss_key('F1_REWEIGHTED_LOSS', 'f1', 'ctr') == 'f1_ctr'


def test_losses_compile_in_static_shapes():
  """One jitted function serves batches with different pair counts."""
  param = complete(dict(ohem_ratio=0.5), schema.PAIRWISE_LOGISTIC_LOSS)
  traces = []

  @jax.jit
  def f(z, y, w):
    traces.append(1)
    return loss_value('PAIRWISE_LOGISTIC_LOSS', z, y, w, param)

  for y in (Y, GRADED, np.ones(B)):
    np.testing.assert_allclose(f(jnp.asarray(Z), jnp.asarray(y), jnp.asarray(W)),
                               ref_pairwise_logistic(Z, y, W, ohem_ratio=0.5), rtol=1e-5)
  assert len(traces) == 1


# ---- config ----------------------------------------------------------------------------

def test_parameter_messages_are_loss_protos_one_of():
  """Their defaults are in test_defaults.py; here: loss.proto's field names and order, and
  alpha / hinge_margin present only when set (EasyRec reads them under HasField)."""
  assert schema.LOSS.oneof == ('f1_reweighted_loss', 'binary_focal_loss', 'pairwise_loss',
                               'pairwise_focal_loss', 'pairwise_logistic_loss', 'jrc_loss')
  assert 'alpha' not in complete({}, schema.BINARY_FOCAL_LOSS)
  assert complete(dict(alpha=0.25), schema.BINARY_FOCAL_LOSS).alpha == 0.25
  assert 'hinge_margin' not in complete({}, schema.PAIRWISE_FOCAL_LOSS)
  assert complete(dict(hinge_margin=1), schema.PAIRWISE_LOGISTIC_LOSS).hinge_margin == 1.0
  with pytest.raises(ConfigError, match='jrc_loss.session_name: required field'):
    complete({}, schema.JRC_LOSS, 'jrc_loss')
  with pytest.raises(ConfigError, match='binary_focal_loss.alpha: expected float'):
    complete(dict(alpha='x'), schema.BINARY_FOCAL_LOSS, 'binary_focal_loss')


def _tower_config(**tower):
  config = mmoe.get_config()
  config.model_config.mmoe.task_towers[0].update(**{'metrics_set': (), **tower})
  return config


@pytest.mark.parametrize('loss_type, metric', [
    ('SIGMOID_L2_LOSS', 'mean_squared_error'), ('BINARY_FOCAL_LOSS', 'auc'),
    ('PAIR_WISE_LOSS', 'auc'), ('PAIRWISE_LOGISTIC_LOSS', 'auc'), ('PAIRWISE_FOCAL_LOSS', 'auc'),
    ('F1_REWEIGHTED_LOSS', 'auc')])
def test_a_tower_takes_a_bare_new_loss_type(loss_type, metric):
  tower = validate(_tower_config(loss_type=loss_type)).model_config.mmoe.task_towers[0]
  assert [list(m) for m in tower.metrics_set] == [[metric]]


@pytest.mark.parametrize('tower, match', [
    (dict(loss_type='BINARY_FOCAL_LOSS', num_class=2),
     r'task_towers\[0\]\.num_class: BINARY_FOCAL_LOSS needs num_class 1, got 2'),
    (dict(loss_type='SIGMOID_L2_LOSS', num_class=2), r'task_towers\[0\]\.num_class: '),
    (dict(loss_type='JRC_LOSS', num_class=1), r'task_towers\[0\]\.num_class: JRC_LOSS needs '
                                              r'num_class 2, got 1'),
    (dict(loss_type='JRC_LOSS', num_class=2), r'task_towers\[0\]\.loss_type: JRC_LOSS needs '
                                              r'sessions'),
    (dict(loss_type='SIGMOID_L2_LOSS', metrics_set=(dict(auc={}),)),
     r'task_towers\[0\]\.metrics_set\[0\]\.auc: needs a tower of a binary loss type'),
    (dict(loss_type='PAIR_WISE_LOSS', metrics_set=(dict(mean_absolute_error={}),)),
     r'task_towers\[0\]\.metrics_set\[0\]\.mean_absolute_error: not defined for a '
     r'PAIR_WISE_LOSS tower'),
])
def test_tower_loss_type_errors_name_the_field(tower, match):
  with pytest.raises(ConfigError, match=match):
    validate(_tower_config(**tower))


@pytest.mark.parametrize('loss, match', [
    (dict(loss_type='JRC_LOSS', jrc_loss=dict(session_name='')),
     r'losses\[0\]\.jrc_loss\.session_name: JRC_LOSS needs sessions'),
    (dict(loss_type='JRC_LOSS', jrc_loss=dict(session_name='user_id',
                                              loss_weight_strategy='uncertainty')),
     r"losses\[0\]\.jrc_loss\.loss_weight_strategy: 'uncertainty' is not implemented"),
    (dict(loss_type='JRC_LOSS', jrc_loss=dict(session_name='user_id', loss_weight_strategy='x')),
     r"losses\[0\]\.jrc_loss\.loss_weight_strategy: 'x' is not one of"),
    (dict(loss_type='BINARY_FOCAL_LOSS', binary_focal_loss=dict(ohem_ratio=0.0)),
     r'losses\[0\]\.binary_focal_loss\.ohem_ratio: 0.0 must be in \(0, 1\]'),
    (dict(loss_type='PAIRWISE_FOCAL_LOSS', pairwise_focal_loss=dict(gamma=-1.0)),
     r'losses\[0\]\.pairwise_focal_loss\.gamma: -1.0 must be >= 0'),
    (dict(loss_type='PAIRWISE_LOGISTIC_LOSS', pairwise_logistic_loss=dict(temperature=0.0)),
     r'losses\[0\]\.pairwise_logistic_loss\.temperature: 0.0 must be > 0'),
])
def test_loss_parameter_errors_name_the_field(loss, match):
  num_class = 2 if loss['loss_type'] == 'JRC_LOSS' else 1
  with pytest.raises(ConfigError, match=match):
    validate(_tower_config(num_class=num_class, losses=(loss,)))


@pytest.mark.parametrize('losses, head', [
    ((dict(loss_type='F1_REWEIGHTED_LOSS'), dict(loss_type='PAIR_WISE_LOSS')),
     'F1_REWEIGHTED_LOSS'),
    ((dict(loss_type='PAIR_WISE_LOSS'), dict(loss_type='CLASSIFICATION')), 'CLASSIFICATION'),
    ((dict(loss_type='SIGMOID_L2_LOSS'),), 'SIGMOID_L2_LOSS'),
    ((dict(loss_type='JRC_LOSS', jrc_loss=dict(session_name='user_id')),), 'JRC_LOSS')])
def test_a_tower_with_losses_gets_their_head(losses, head):
  num_class = 2 if head == 'JRC_LOSS' else 1
  config = validate(_tower_config(num_class=num_class, losses=losses))
  assert config.model_config.mmoe.task_towers[0].loss_type == head


def test_losses_of_different_heads_are_an_error():
  with pytest.raises(ConfigError, match=r'losses\[1\]\.loss_type: mixes an SIGMOID_L2_LOSS head '
                                        r'with the BINARY_FOCAL_LOSS head of .*losses\[0\]'):
    validate(_tower_config(losses=(dict(loss_type='BINARY_FOCAL_LOSS'),
                                   dict(loss_type='SIGMOID_L2_LOSS'))))


# ---- heads and metrics -----------------------------------------------------------------

def test_heads_per_loss_type():
  z1, z2 = jnp.asarray(Z), jnp.asarray(RNG.normal(size=(B, 2)))
  np.testing.assert_allclose(head('SIGMOID_L2_LOSS', 't', z1)['y_t'], sigmoid(Z), rtol=1e-6)
  assert set(head('SIGMOID_L2_LOSS', 't', z1)) == {'y_t'}
  for t in ('BINARY_FOCAL_LOSS', 'PAIR_WISE_LOSS', 'PAIRWISE_FOCAL_LOSS',
            'PAIRWISE_LOGISTIC_LOSS', 'F1_REWEIGHTED_LOSS'):
    out = head(t, 't', z1)
    assert set(out) == {'logits_t', 'probs_t'}
    np.testing.assert_allclose(out['probs_t'], sigmoid(Z), rtol=1e-6)
  out = head('JRC_LOSS', 'c', z2)
  assert set(out) == {'logits_c', 'pos_logits_c', 'probs_c'}
  z2 = np.asarray(z2)
  np.testing.assert_allclose(out['pos_logits_c'], z2[:, 1])
  np.testing.assert_allclose(out['probs_c'], np.exp(z2[:, 1]) / np.exp(z2).sum(1), rtol=1e-6)


def test_metrics_read_the_heads_prediction():
  auc_metric, mse = (complete({m: {}}, schema.EVAL_METRICS) for m in ('auc', 'mean_squared_error'))
  z2 = RNG.normal(size=(B, 2))
  jrc = types.SimpleNamespace(tower_name='c', label_name='y', loss_type='JRC_LOSS', num_class=2,
                              metrics_set=(auc_metric,))
  preds = {k: np.asarray(v) for k, v in head('JRC_LOSS', 'c', jnp.asarray(z2)).items()}
  assert metrics.tower_metrics(jrc, preds, {'y': Y}) == {
      'auc_c': metrics.auc(Y, np.exp(z2[:, 1]) / np.exp(z2).sum(1))}
  sl2 = types.SimpleNamespace(tower_name='g', label_name='y', loss_type='SIGMOID_L2_LOSS',
                              num_class=1, metrics_set=(mse,))
  preds = {k: np.asarray(v) for k, v in head('SIGMOID_L2_LOSS', 'g', jnp.asarray(Z)).items()}
  got = metrics.tower_metrics(sl2, preds, {'y': Y})['mean_squared_error_g']
  np.testing.assert_allclose(got, np.mean((sigmoid(Z) - Y) ** 2), rtol=1e-6)


# ---- dice ------------------------------------------------------------------------------

def ref_dice(x, alpha, mean, var):
  p = sigmoid((x - mean) / np.sqrt(var + 1e-9))
  return p * x + alpha * (1 - p) * x


def test_dice_in_train_and_eval_mode():
  x = RNG.normal(size=(16, 3)) * 2 + 1
  alpha = np.array([0.0, 0.5, -1.0])
  module = Dice()
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(x), train=False)
  variables = jax.tree.map(lambda v: v, nn.meta.unbox(variables))
  assert variables['params']['alpha'].tolist() == [0.0, 0.0, 0.0]  # initialised to 0
  variables['params']['alpha'] = jnp.asarray(alpha, jnp.float32)
  out, updated = module.apply(variables, jnp.asarray(x), train=True, mutable=['batch_stats'])
  mean, var = x.mean(0), x.var(0)  # batch statistics (biased variance, as TF)
  np.testing.assert_allclose(out, ref_dice(x, alpha, mean, var), rtol=1e-5, atol=1e-6)
  stats = updated['batch_stats']['bn']
  np.testing.assert_allclose(stats['mean'], 0.01 * mean, rtol=1e-5)  # momentum 0.99 from 0
  np.testing.assert_allclose(stats['var'], 0.99 + 0.01 * var, rtol=1e-5)  # and from 1
  variables['batch_stats'] = updated['batch_stats']
  out = module.apply(variables, jnp.asarray(x), train=False)  # the moving statistics
  np.testing.assert_allclose(out, ref_dice(x, alpha, 0.01 * mean, 0.99 + 0.01 * var),
                             rtol=1e-5, atol=1e-6)


def test_dice_in_a_dnn_declares_axes_and_is_not_regularized():
  x = jnp.asarray(RNG.normal(size=(8, 5)))
  for num_expert, axes in ((0, ('mlp',)), (3, ('expert', 'mlp'))):
    dnn = Dnn(DnnSpec(hidden_units=(2,), activation='dice'), num_expert)
    boxed = jax.jit(lambda x: dnn.init(jax.random.PRNGKey(0), x, train=False))(x)
    declared = sharding_lib.declared_axes(boxed)
    assert tuple(declared['params']['act_0']['alpha']) == axes
    assert {k: tuple(v) for k, v in declared['batch_stats']['act_0']['bn'].items()} == {
        'mean': axes, 'var': axes}
    params = nn.meta.unbox(boxed)['params']
    alpha_only = jax.tree.map(jnp.zeros_like, params)
    alpha_only['act_0']['alpha'] = jnp.ones_like(params['act_0']['alpha'])
    assert float(losses.kernel_l2(alpha_only, declared['params'])) == 0.0
  config = mmoe.get_config()
  config.model_config.mmoe.expert_dnn.activation = 'dice'
  assert validate(config).model_config.mmoe.expert_dnn.activation == 'dice'


def test_jrc_labels_are_checked_as_two_classes():
  config = mmoe.get_config()
  config.model_config.mmoe.task_towers[0].update(loss_type='JRC_LOSS', num_class=2)
  labels = {'clk': np.array([0, 1, 2]), 'buy': np.zeros(3)}
  row, message = data.label_errors(config, types.SimpleNamespace(labels=labels))
  assert row == 2 and 'integer in [0, 2)' in message
  labels['clk'] = np.array([0, 1, 1])
  assert data.label_errors(config, types.SimpleNamespace(labels=labels)) is None


def test_esmm_cvr_tower_stays_classification_or_l2():
  import esmm
  config = esmm.get_config()
  config.model_config.esmm.cvr_tower.update(loss_type='BINARY_FOCAL_LOSS', metrics_set=())
  with pytest.raises(ConfigError, match=r'esmm\.cvr_tower\.loss_type: ESMM\'s cvr tower is '
                                        r'CLASSIFICATION or L2_LOSS, got BINARY_FOCAL_LOSS'):
    validate(config)
