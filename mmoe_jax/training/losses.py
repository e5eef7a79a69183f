"""EasyRec's losses: per-tower task losses, L2 on dense kernels, embedding L2.

Names follow EasyRec's logs: cross_entropy_loss_<tower> (CLASSIFICATION),
l2_loss_<tower> (L2_LOSS), order_calibrate_loss, regularization_loss and total_loss.

A tower's losses (its `losses {}`, or its one loss_type) are assembled as EasyRec's
MultiTaskModel does (docs/training_signals.md): each loss is reduced over the batch with
the tower's per-sample weights (sample weight x task-space factors), then weighted by
loss_weight_strategy: Fixed (loss.weight x tower.weight), Random (softmax of normal draws
each step) or Uncertainty (a learnt weight per loss with learn_loss_weight). Unlike
EasyRec, each loss of a tower gets its own weight (EasyRec gives every loss the first's).
The other loss types' formulas live in loss_types.py.
"""

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mmoe_jax.config import ConfigError, loss_keys_of, task_towers
from mmoe_jax.config.validate import MODEL_PARAMS
from mmoe_jax.data import signals
from mmoe_jax.models.layers import l2_loss
from mmoe_jax.sharding import is_kernel
from mmoe_jax.training import loss_types

log = logging.getLogger('mmoe_jax')

# The losses whose learnt (Uncertainty) weight is 0.5 exp(-s): EasyRec's regression losses.
HALF_UNCERTAINTY = ('L2_LOSS', 'SIGMOID_L2_LOSS')
ORDER_CALIBRATE = 'ORDER_CALIBRATE_LOSS'
CALIBRATE_KEY = 'order_calibrate_loss'
# Where the step's metrics log the weight each loss got (Random, Uncertainty, Pareto).
WEIGHT_PREFIX = 'loss_weight/'
# Frank-Wolfe iterations of the Pareto weights beyond two losses (fixed, inside the step);
# pairwise steps converge linearly, so this is exact to float precision for a few losses.
PARETO_ITERATIONS = 100


# EasyRec's reduction (TF1's SUM_BY_NONZERO_WEIGHTS), shared with every loss formula.
nzmean = loss_types.nzmean


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """One entry of the loss dict: a loss of one tower, as the config asks for it."""
  key: str  # EasyRec's loss key
  tower: str  # tower_name
  loss_type: str
  path: str  # the config field path of the loss, for errors
  weight: float = 1.0  # Fixed: loss.weight x tower.weight
  learnt: bool = False  # Uncertainty: a learnt weight replaces `weight`
  slot: int = 0  # Random: the index of its draw
  min_weight: float = 0.0  # use_pareto_loss_weight: its least weight
  loss_param: Any = None  # the loss's loss_param message, or None
  session: str | None = None  # the batch key of its session ids (data/signals.py), or None
  # ORDER_CALIBRATE_LOSS: (loss.weight, relation tower) of each term
  calibrations: tuple = ()


@dataclasses.dataclass(frozen=True)
class TowerSignals:
  """How a tower weighs its samples (mtl.md 6.2), as label keys of the batch."""
  label: str
  sample_weight: str | None  # the batch's sample-weight key, if used
  task_space: tuple  # ((mask key or label name, is_label), ...)
  in_weight: float = 1.0
  out_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class LossPlan:
  """The loss terms of a config and how they are weighted; built once per Trainer."""
  terms: tuple  # LossTerm, in EasyRec's order
  towers: dict  # tower_name -> TowerSignals
  strategy: str = 'Fixed'
  num_slots: int = 0  # Random: loss slots over all towers (ORDER_CALIBRATE counts too)
  pareto: bool = False
  reduction: str = 'SUM_BY_NONZERO_WEIGHTS'

  @property
  def learnt_keys(self):
    return tuple(t.key for t in self.terms if t.learnt)

  @classmethod
  def of(cls, config):
    """The plan of a validated config (not ESMM, whose losses are its own)."""
    model = config.model_config
    return cls.build(task_towers(model), model, config.data_config.sample_weight,
                     f'model_config.{MODEL_PARAMS[model.model_class]}.task_towers')

  @classmethod
  def build(cls, towers, model=None, sample_weight='', path='task_towers'):
    """The plan of validated `towers` (at config `path`); `model` (model_config) gives the
    strategy, Fixed if None; sample_weight: data_config's."""
    terms, signal_specs, slot, keys = [], {}, 0, {}
    for i, tower in enumerate(towers):
      tpath = f'{path}[{i}]'
      terms += _tower_terms(tower, tpath, slot)
      slot += max(1, len(tower.losses))
      signal_specs[tower.tower_name] = _tower_signals(tower, sample_weight)
    for term in terms:
      if term.key in keys:
        raise ConfigError(f'{term.path}: its loss key {term.key!r} is also the key of '
                          f'{keys[term.key]} (EasyRec would keep only the last); set '
                          'loss_name to tell them apart')
      keys[term.key] = term.path
    get = lambda field, default: model[field] if model is not None else default
    return cls(tuple(terms), signal_specs, get('loss_weight_strategy', 'Fixed'), slot,
               get('use_pareto_loss_weight', False),
               get('sample_weight_reduction', 'SUM_BY_NONZERO_WEIGHTS'))


def loss_key(loss_type, loss_name, tower_name):
  """EasyRec's key of a loss (mtl.md 7): loss_types' keys, and ORDER_CALIBRATE_LOSS's one
  key for every tower."""
  if loss_type == ORDER_CALIBRATE:
    return CALIBRATE_KEY
  return loss_types.loss_key(loss_type, loss_name, tower_name)


def _tower_terms(tower, tpath, slot):
  """A tower's LossTerms; `slot`: the first of its Random slots."""
  if not tower.losses:
    return [LossTerm(loss_key(tower.loss_type, '', tower.tower_name), tower.tower_name,
                     tower.loss_type, f'{tpath}.loss_type', tower.weight, slot=slot,
                     min_weight=tower.pareto_min_loss_weight)]
  terms = []
  for k, entry in loss_keys_of(tower):
    loss = tower.losses[k]
    lpath = f'{tpath}.losses[{k}]'
    if loss.loss_type == ORDER_CALIBRATE:
      calibrations = tuple((l.weight, name) for l in tower.losses
                           if l.loss_type == ORDER_CALIBRATE
                           for name in tower.relation_tower_names)
      terms.append(LossTerm(CALIBRATE_KEY, tower.tower_name, ORDER_CALIBRATE, lpath,
                            min_weight=tower.pareto_min_loss_weight, slot=slot + k,
                            calibrations=calibrations))
      continue
    _check_implemented(loss.loss_type, f'{lpath}.loss_type')
    param = next((loss[name] for name in signals.LOSS_PARAMS if name in loss), None)
    session = signals.session_name(loss)
    terms.append(LossTerm(loss_key(loss.loss_type, loss.loss_name, tower.tower_name),
                          tower.tower_name, loss.loss_type, lpath, loss.weight * tower.weight,
                          loss.learn_loss_weight, slot + k, tower.pareto_min_loss_weight, param,
                          signals.session_key(session) if session else None))
  if any(l.loss_type == ORDER_CALIBRATE for l in tower.losses) and not tower.get(
      'relation_tower_names'):
    # EasyRec adds nothing here, silently (its aitm sample does this).
    log.warning('%s.losses: ORDER_CALIBRATE_LOSS on tower %r is empty: the tower has no '
                'relation_tower_names to compare its probs with', tpath, tower.tower_name)
  return terms


def _check_implemented(loss_type, path):
  if loss_type in ('CLASSIFICATION', 'L2_LOSS'):
    return
  if loss_type not in loss_types.LOSS_TYPES:
    raise ConfigError(f'{path}: {loss_type} is not implemented in this version of mmoe_jax')


def _tower_signals(tower, sample_weight):
  space = []
  if tower.task_space_indicator_label:
    space.append((tower.task_space_indicator_label, True))
  if tower.task_space_indicator_name:
    space.append((signals.mask_key(tower.task_space_indicator_name,
                                   tower.task_space_indicator_value), False))
  return TowerSignals(tower.label_name,
                      signals.SAMPLE_WEIGHT if sample_weight and tower.use_sample_weight else None,
                      tuple(space), tower.in_task_space_weight, tower.out_task_space_weight)


def sample_weights(labels, spec, batch_size, reduction='SUM_BY_NONZERO_WEIGHTS'):
  """A tower's per-sample loss weights [B] (mtl.md 6.2): the sample weight (or 1), times
  in_task_space_weight or out_task_space_weight by each task-space indicator. Under the
  WEIGHTED_MEAN reduction they are rescaled so that nzmean gives sum(w l) / sum(w)."""
  w = (labels[spec.sample_weight].astype(jnp.float32) if spec.sample_weight
       else jnp.ones((batch_size,), jnp.float32))
  for key, is_label in spec.task_space:
    inside = (labels[key] > 0) if is_label else (labels[key] != 0)
    w = w * jnp.where(inside, spec.in_weight, spec.out_weight)
  if reduction == 'WEIGHTED_MEAN':
    total = jnp.sum(w)
    w = jnp.where(total != 0, w * jnp.sum(w != 0) / jnp.where(total != 0, total, 1.0), 0.0)
  return w


def loss_value(term, logits, label, weight, session=None, rng=None):
  """One loss reduced over the batch with per-sample `weight` (EasyRec's reduction), before
  any loss weight; rng: JRC_LOSS's key for its random loss_weight_strategy values."""
  return loss_types.loss_value(term.loss_type, logits, label, weight, term.loss_param, session,
                               rng)


def order_calibrate(term, logits):
  """sum over (loss.weight, relation tower a) of weight * mean relu(p_t - p_a) (mtl.md 5):
  tower t's probability should not exceed that of the towers it follows (a click before a
  buy). No sample, tower or learnt weight; gradients reach both towers."""
  p = lambda name: jax.nn.sigmoid(logits[name].astype(jnp.float32))
  return sum(w * jnp.mean(jax.nn.relu(p(term.tower) - p(name))) for w, name in term.calibrations)


def task_losses(logits, labels, plan, rng=None, learnt=None):
  """The task losses of one batch: ({key: weighted loss}, {key: the weight it got}); the
  second holds only weights that are not constants of the config (Random, Uncertainty).

  rng: the step's key (Random); learnt: {key: s}, the Uncertainty scalars.
  """
  batch_size = next(iter(labels.values())).shape[0]
  if plan.strategy == 'Random':
    draws = jax.nn.softmax(jax.random.normal(rng, (plan.num_slots,)))
  weights_by_tower = {name: sample_weights(labels, spec, batch_size, plan.reduction)
                      for name, spec in plan.towers.items()}
  values, weights = {}, {}
  for term in plan.terms:
    if term.loss_type == ORDER_CALIBRATE:
      values[term.key] = order_calibrate(term, logits)
      continue
    spec = plan.towers[term.tower]
    value = loss_value(term, logits[term.tower], labels[spec.label], weights_by_tower[term.tower],
                       labels[term.session] if term.session else None,
                       jax.random.fold_in(rng, term.slot) if rng is not None else None)
    if term.learnt:
      s = learnt[term.key]
      scale = (0.5 if term.loss_type in HALF_UNCERTAINTY else 1.0) * jnp.exp(-s)
      values[term.key] = scale * value + 0.5 * s
      weights[term.key] = scale
    elif plan.strategy == 'Random':
      values[term.key] = draws[term.slot] * value
      weights[term.key] = draws[term.slot]
    else:
      values[term.key] = term.weight * value
  return values, weights


def task_loss(logits, label, tower):
  """One tower's loss_type loss, scaled by its weight, with unit sample weights; returns
  (name, value). With unit weights, TF's SUM_BY_NONZERO_WEIGHTS is weight * mean."""
  term = LossTerm(loss_key(tower.loss_type, '', tower.tower_name), tower.tower_name,
                  tower.loss_type, 'loss_type', tower.weight)
  value = loss_value(term, logits, label, jnp.ones(label.shape[:1], jnp.float32))
  return term.key, tower.weight * value


def pareto_weights(gram, min_weights, iterations=PARETO_ITERATIONS):
  """The Pareto weights w + c (mtl.md 6.5) of K losses whose gradients G have Gram matrix
  `gram` = G G^T: the a minimising |sum_k a_k G_k|^2 over {a >= c, sum a = 1}, c the least
  weights (sum c < 1). Two losses: the closed form, the min-norm point of the segment;
  more: pairwise Frank-Wolfe with exact line search, a fixed number of iterations (lax loop).
  """
  gram = gram.astype(jnp.float32)
  c = jnp.asarray(min_weights, jnp.float32)
  k = gram.shape[0]
  if k == 1:
    return jnp.ones((1,), jnp.float32)
  if k == 2:
    # |a G1 + (1-a) G2|^2 is least at a = (G2.G2 - G1.G2) / |G1 - G2|^2, clipped to [c1, 1-c2]
    diff = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]
    a = jnp.where(diff > 0, (gram[1, 1] - gram[0, 1]) / jnp.where(diff > 0, diff, 1.0), 0.5)
    a = jnp.clip(a, c[0], 1 - c[1])
    return jnp.stack([a, 1 - a])
  free = 1 - jnp.sum(c)

  def step(_, a):
    # Pairwise Frank-Wolfe (linear convergence on a simplex): move weight from the loss whose
    # gradient agrees most with the current direction (among those above their least weight)
    # to the one that agrees least, with an exact line search.
    grad = gram @ a
    to = jnp.argmin(grad)
    frm = jnp.argmax(jnp.where(a > c + 1e-12, grad, -jnp.inf))
    d = jax.nn.one_hot(to, k) - jax.nn.one_hot(frm, k)
    curvature = d @ gram @ d
    most = a[frm] - c[frm]
    gamma = jnp.where(curvature > 0, -(d @ grad) / jnp.where(curvature > 0, curvature, 1.0), most)
    return a + jnp.clip(gamma, 0.0, most) * d

  return jax.lax.fori_loop(0, iterations, step, c + free / k)


def kernel_l2(params, axes):
  """l2_loss (sum(W^2)/2) over the dense kernels, as their declared `axes` (a tree like
  `params`) say: experts, gates, towers, outputs.

  Biases, batch-norm scales and embedding tables are excluded, as in EasyRec, whose
  l2_regularization is a kernel_regularizer on its dense layers. In a backbone every
  block's kernels count, SENet's too (EasyRec gives SENet no regularizer).
  """
  return l2_loss([leaf for leaf, logical in zip(jax.tree.leaves(params), jax.tree.leaves(axes))
                  if is_kernel(logical)])


# The clip of Keras' binary_crossentropy on probabilities (its backend epsilon).
ESMM_EPSILON = 1e-7


def esmm_task_losses(logits, labels, cvr, ctr):
  """EasyRec's ESMM losses (model/esmm.py), both on the whole impression space.

  weighted_cross_entropy_loss_<cvr>: cvr.weight * sum_i BCE(y_cvr y_ctr, pCTCVR), pCTCVR
  = sigmoid(z_cvr) sigmoid(z_ctr) clipped to [1e-7, 1 - 1e-7]; for an L2_LOSS cvr tower,
  weighted_l2_loss_<cvr>: cvr.weight * mean_i (y_cvr y_ctr - y_cvr_pred sigmoid(z_ctr))^2.
  weighted_cross_entropy_loss_<ctr>: ctr.weight * sum_i sigmoid_CE(z_ctr, y_ctr).
  The cross entropies are sums over the batch, not means, as in EasyRec.
  """
  z_cvr = logits[cvr.tower_name].astype(jnp.float32)
  z_ctr = logits[ctr.tower_name].astype(jnp.float32)
  y_ctr = labels[ctr.label_name]
  y_ctcvr = labels[cvr.label_name] * y_ctr
  if cvr.loss_type == 'L2_LOSS':
    cvr_term = (f'weighted_l2_loss_{cvr.tower_name}',
                jnp.mean(jnp.square(y_ctcvr - z_cvr * jax.nn.sigmoid(z_ctr))))
  else:
    p = jnp.clip(jax.nn.sigmoid(z_cvr) * jax.nn.sigmoid(z_ctr), ESMM_EPSILON, 1 - ESMM_EPSILON)
    cvr_term = (f'weighted_cross_entropy_loss_{cvr.tower_name}',
                -jnp.sum(y_ctcvr * jnp.log(p) + (1 - y_ctcvr) * jnp.log(1 - p)))
  ctr_loss = jnp.sum(optax.sigmoid_binary_cross_entropy(z_ctr, y_ctr))
  return {cvr_term[0]: cvr.weight * cvr_term[1],
          f'weighted_cross_entropy_loss_{ctr.tower_name}': ctr.weight * ctr_loss}


def total_loss(logits, aux, params, axes, labels, towers, l2_regularization,
               embedding_regularization, model_class='MMoE', plan=None, rng=None, learnt=None):
  """Returns (total_loss, dict of every named loss term); `axes`: the params' declared axes;
  towers: ESMM's are (cvr, ctr). plan: the LossPlan (None: the towers' own losses, Fixed);
  rng and learnt: see task_losses. The weights that are not constants go to
  loss_weight/<key> in the dict (not summed)."""
  weights = {}
  if model_class == 'ESMM':
    terms = esmm_task_losses(logits, labels, *towers)
  else:
    terms, weights = task_losses(logits, labels, plan or LossPlan.build(towers), rng, learnt)
  terms['regularization_loss'] = regularization(params, axes, aux, l2_regularization,
                                                embedding_regularization)
  terms['total_loss'] = sum(terms.values())
  terms.update({WEIGHT_PREFIX + k: v for k, v in weights.items()})
  return terms['total_loss'], terms


def regularization(params, axes, aux, l2_regularization, embedding_regularization):
  """EasyRec's regularization_loss: kernel L2 and embedding L2 of the batch's vectors."""
  return (l2_regularization * kernel_l2(params, axes)
          + embedding_regularization * aux['embedding_l2'])
