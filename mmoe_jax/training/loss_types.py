"""EasyRec's loss types (easy_rec/python/builders/loss_builder.py, easy_rec/python/loss/*.py)
as pure functions of one tower's output, in static shapes.

EasyRec gathers the pairs of a batch with tf.boolean_mask, a shape that depends on the
data; here every pairwise quantity is a [B, B] array and a mask says which entries are
pairs, so one compiled step serves every batch. docs/loss_types.md gives the formulas and
where this module differs from EasyRec.

Reductions are EasyRec's (TF's SUM_BY_NONZERO_WEIGHTS): sum_i w_i l_i / #{i: w_i != 0},
0 when no weight is non-zero. The config weight of a loss is not applied here.
"""

import jax
import jax.numpy as jnp
import optax

from mmoe_jax.config import complete, schema
from mmoe_jax.config.validate import L2_TYPES, LOSS_PARAMS, LOSS_TYPES as _NAMES

LOSS_TYPES = frozenset(_NAMES)

# focal_loss.py clips sigmoid(z) to [EPSILON, 1 - EPSILON] in the focal factor.
EPSILON = 1e-7
# f1_reweight_loss.py's guard in the denominator of the negative weight.
F1_EPSILON = 1e-8


def loss_key(loss_type, loss_name, tower_name):
  """EasyRec's key of a loss in the loss dict (rank_model.py `_build_loss_impl`).

  CLASSIFICATION and the L2 types: loss_name as given (no tower suffix), else
  cross_entropy_loss_<t> / l2_loss_<t>; other types: <loss_name or the lowercase type>_<t>.
  """
  if loss_type == 'CLASSIFICATION':
    return loss_name or f'cross_entropy_loss_{tower_name}'
  if loss_type in L2_TYPES:
    return loss_name or f'l2_loss_{tower_name}'
  return f'{loss_name or loss_type.lower()}_{tower_name}'


def loss_value(loss_type, logits, label, weight, loss_param=None, session=None, rng=None):
  """One loss of one tower, EasyRec's value, without the config weight.

  Args:
    loss_type: a name in LOSS_TYPES.
    logits: the tower's output o, [B] (num_class 1) or [B, C].
    label: [B], float (integer classes for a softmax: CLASSIFICATION with C > 1, JRC_LOSS).
    weight: [B] per-sample weights (sample weight and task-space factors).
    loss_param: the Loss message's one-of parameters of this type (a ConfigDict of
      schema.LOSS.fields[validate.LOSS_PARAMS[loss_type]]), or None: its defaults.
    session: [B] int session ids (equal ids, one session), or None: the whole batch is
      one session. Pairwise losses pair only within a session; JRC_LOSS needs it.
    rng: a PRNG key for JRC_LOSS's random loss_weight_strategy values.

  Returns:
    A float32 scalar.
  """
  if loss_type not in LOSS_TYPES:
    raise ValueError(f'loss_type: {loss_type!r} is not one of {", ".join(sorted(LOSS_TYPES))}')
  z = logits.astype(jnp.float32)
  w = jnp.broadcast_to(jnp.asarray(weight, jnp.float32), label.shape)
  p = _params(loss_type, loss_param)
  if loss_type == 'CLASSIFICATION':
    if z.ndim == 1:
      return nzmean(optax.sigmoid_binary_cross_entropy(z, label.astype(jnp.float32)), w)
    return nzmean(optax.softmax_cross_entropy_with_integer_labels(z, label.astype(jnp.int32)), w)
  y = label.astype(jnp.float32)
  if loss_type == 'L2_LOSS':
    return nzmean(jnp.square(y - z), w)
  if loss_type == 'SIGMOID_L2_LOSS':
    return nzmean(jnp.square(y - jax.nn.sigmoid(z)), w)
  if loss_type == 'BINARY_FOCAL_LOSS':
    return focal(z, y, w, jnp.ones_like(y, bool), p.gamma, p.get('alpha'), p.ohem_ratio,
                 p.label_smoothing)
  if loss_type == 'F1_REWEIGHTED_LOSS':
    return f1_reweighted(z, y, w, p.f1_beta_square, p.label_smoothing)
  if loss_type == 'JRC_LOSS':
    return jrc(z, label.astype(jnp.int32), w, session, p, rng)
  return pairwise(loss_type, z, y, w, session, p)


def _params(loss_type, loss_param):
  """The loss's parameters: `loss_param`, or its message's defaults (None for types without)."""
  if loss_param is not None or loss_type not in LOSS_PARAMS:
    return loss_param
  field = LOSS_PARAMS[loss_type]
  required = {'session_name': ''} if field == 'jrc_loss' else {}  # unset: checked by jrc()
  return complete(required, schema.LOSS.fields[field], field)


def nzmean(losses, weights):
  """TF's SUM_BY_NONZERO_WEIGHTS: sum(w l) / #{w != 0}; 0 when every weight is 0."""
  count = jnp.count_nonzero(weights)
  total = jnp.sum(jnp.where(weights != 0, weights * losses, 0.0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def ohem_mean(weighted, valid, ratio):
  """EasyRec's online hard example mining: the mean of the positive values among the
  round(P * ratio) largest of `weighted` (P = the number of `valid` entries), 0 if none.

  Static shapes: a full descending sort with the invalid entries last, then a mask of the
  first k, instead of tf.nn.top_k's dynamic k.
  """
  flat = jnp.where(valid, weighted, -jnp.inf).ravel()
  # tf.math.rint in float32, as EasyRec: halves round to even
  k = jnp.round(jnp.sum(valid).astype(jnp.float32) * jnp.float32(ratio)).astype(jnp.int32)
  top = -jnp.sort(-flat)
  keep = (jnp.arange(top.size) < k) & (top > 0)
  return jnp.sum(jnp.where(keep, top, 0.0)) / jnp.maximum(jnp.sum(keep), 1)


def reduce(losses, weights, valid, ohem_ratio=1.0):
  """nzmean over the `valid` entries, or, with ohem_ratio < 1, ohem_mean of losses * weights."""
  weights = jnp.where(valid, weights, 0.0)
  if ohem_ratio == 1.0:
    return nzmean(losses, weights)
  return ohem_mean(losses * weights, valid, ohem_ratio)


def focal(z, y, w, valid, gamma, alpha, ohem_ratio, label_smoothing=0.0):
  """focal_loss.py: sigmoid CE on smoothed labels, weighted by (1 - p_t)^gamma, the alpha
  factor (if alpha is set) and w. The factor is differentiated, as in EasyRec."""
  p = jnp.clip(jax.nn.sigmoid(z), EPSILON, 1 - EPSILON)
  p_t = y * p + (1 - y) * (1 - p)
  v = jnp.power(1 - p_t, gamma) * w
  if alpha is not None:
    v = v * (y * alpha + (1 - alpha) * (1 - y))
  smoothed = y * (1 - label_smoothing) + 0.5 * label_smoothing
  return reduce(optax.sigmoid_binary_cross_entropy(z, smoothed), v, valid, ohem_ratio)


def f1_reweighted(z, y, w, beta_square, label_smoothing):
  """f1_reweight_loss.py: sigmoid CE, negatives (label != 1) weighted by
  neg_w = S / ((beta^2 - 1) P + S + 1e-8), with P = sum(y) and S = sum(sigmoid(z)) over
  the batch; the gradient flows through neg_w."""
  s = jnp.sum(jax.nn.sigmoid(z))
  neg_w = s / ((beta_square - 1) * jnp.sum(y) + s + F1_EPSILON)
  weights = jnp.where(y == 1.0, 1.0, neg_w) * w
  smoothed = y * (1 - label_smoothing) + 0.5 * label_smoothing
  return nzmean(optax.sigmoid_binary_cross_entropy(z, smoothed), weights)


def same_session(session, size):
  """[B, B]: whether samples i and j share a session (all True without sessions)."""
  if session is None:
    return jnp.ones((size, size), bool)
  return session[:, None] == session[None, :]


def pairwise(loss_type, z, y, w, session, p):
  """The pairwise losses over pairs (i, j) with y_i > y_j in one session, each pair
  weighted by w_i (pairwise_loss.py). [B, B] arrays, pair (i, j) at [i, j]."""
  z = z / p.temperature
  d = z[:, None] - z[None, :]
  pairs = (y[:, None] > y[None, :]) & same_session(session, y.size)
  pair_w = jnp.broadcast_to(w[:, None], d.shape)
  if loss_type == 'PAIR_WISE_LOSS':
    return reduce(jax.nn.softplus(-(d - p.margin)), pair_w, pairs)
  if loss_type == 'PAIRWISE_LOGISTIC_LOSS':
    if p.use_label_margin:
      d = d - (y[:, None] - y[None, :]) / p.temperature
    elif 'hinge_margin' in p:
      d = d - p.hinge_margin
    return reduce(jax.nn.softplus(-d), pair_w, pairs, p.ohem_ratio)
  # PAIRWISE_FOCAL_LOSS: binary focal on d with label 1; a set hinge_margin drops the pairs
  # already ordered by more than it.
  if 'hinge_margin' in p:
    pairs = pairs & (d < p.hinge_margin)
  return focal(d, jnp.ones_like(d), pair_w, pairs, p.gamma, p.get('alpha'), p.ohem_ratio)


def jrc(z, y, w, session, p, rng):
  """jrc_loss.py (Sheng et al. 2022): alpha * ce + (1 - alpha) * ge, z [B, 2], y in {0, 1}.

  ce: nzmean_w of the softmax CE. ge: per session and class column c, a softmax over the
  session's samples of z[:, c]. With same_label_loss, sample j's term is
  w_j / |S(j)| * (-sum of log softmax_{S(j)}(z[:, c])_i over the i in S(j) of class c),
  summed over c, then the mean over j; without, the anchor j competes only with its
  session's samples of the other class: -w_j log softmax_{{j} + other class}(z[:, y_j])_j.
  """
  if session is None:
    raise ValueError('jrc_loss.session_name: JRC_LOSS needs session ids (set '
                     'jrc_loss { session_name: "<input field>" })')
  ce = nzmean(optax.softmax_cross_entropy_with_integer_labels(z, y), w)
  same = same_session(session, y.size)
  onehot = jax.nn.one_hot(y, 2, dtype=bool)  # [B, 2]: sample i is of class c
  if p.same_label_loss:
    terms = []
    for c in (0, 1):
      logp = masked_log_softmax(z[:, c], same)  # [i, j]
      terms.append(-jnp.sum(jnp.where(same & onehot[:, c:c + 1], logp, 0.0), axis=0))
    ge = jnp.mean(w * (terms[0] + terms[1]) / jnp.sum(same, axis=0))
  else:
    own = jnp.eye(y.size, dtype=bool)
    anchor = []
    for c in (0, 1):
      # column j: j itself and the samples of its session not of class c
      logp = masked_log_softmax(z[:, c], same & (own | ~onehot[:, c:c + 1]))
      anchor.append(jnp.where(onehot[:, c], -jnp.diagonal(logp), 0.0))
    ge = jnp.mean(w * (anchor[0] + anchor[1]))
  a = jrc_weights(p, rng)
  return a[0] * ce + a[1] * ge


def masked_log_softmax(x, allowed):
  """[i, j]: log softmax over the i with allowed[i, j] of x[i] (-inf elsewhere)."""
  logits = jnp.where(allowed, x[:, None], -jnp.inf)
  top = jax.lax.stop_gradient(jnp.max(logits, axis=0, keepdims=True))
  shifted = jnp.where(allowed, logits - top, -jnp.inf)
  lse = jnp.log(jnp.sum(jnp.where(allowed, jnp.exp(shifted), 0.0), axis=0, keepdims=True))
  return jnp.where(allowed, shifted - lse, -jnp.inf)


def jrc_weights(p, rng):
  """(weight of ce, weight of ge) under jrc_loss.loss_weight_strategy."""
  strategy = p.loss_weight_strategy
  if strategy == 'fixed':
    return (p.alpha, 1 - p.alpha)
  if strategy not in ('random_uniform', 'random_normal', 'random_bernoulli'):
    raise ValueError(f'jrc_loss.loss_weight_strategy: {strategy!r} is not supported (fixed, '
                     'random_uniform, random_normal, random_bernoulli)')
  if rng is None:
    raise ValueError(f'jrc_loss.loss_weight_strategy: {strategy!r} draws weights every step '
                     'and needs an rng')
  if strategy == 'random_uniform':
    u = jax.random.uniform(rng)
    return (u, 1 - u)
  if strategy == 'random_normal':
    return jax.nn.softmax(jax.random.normal(rng, (2,)))
  # random_bernoulli: a one-hot draw, else (0.5, 0.5)
  b = jax.random.bernoulli(rng, 0.5, (2,)).astype(jnp.float32)
  return jnp.where(jnp.sum(b) == 1, b, 0.5)
