"""The train state and the pure, jitted train step of one config.

The train state is a plain dict {step, params, batch_stats, opt_state, rng, hparams,
nonfinite_step, nonfinite}; `Trainer.step` updates it (jitted as `train_step`, the state
donated), and the whole state is what a checkpoint holds, so re-running the same command
resumes exactly. hparams holds the scalar hyper-parameters that a vmapped sweep may vary
per replica (learning_rate). nonfinite_step is the first step whose total_loss or gradient
norm was not finite (-1: none), nonfinite says which (bits of cadence.NONFINITE).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmoe_jax import builder
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.config import model_params, task_towers
from mmoe_jax.training import losses, precision
from mmoe_jax.training.optimizer import Optimizer
from mmoe_jax.training.schedules import base_learning_rate

# EasyRec's summary name for the global norm of the gradients (before clipping).
GRADIENT_NORM = 'global_norm/gradient_norm'
# The params entry of the Uncertainty strategy's learnt scalars, {loss key: s} (EasyRec's
# variables <loss key>_loss_weight); each declares logical axes () (a replicated scalar).
LOSS_WEIGHT = 'loss_weight'
# fold_in of the step's key that draws the Random strategy's weights (dropout uses the key)
RANDOM_LOSS_WEIGHTS = 1


class Trainer:
  """The model, optimizer and jitted steps for one config."""

  def __init__(self, config, example):
    self.config = config
    self.mesh = sharding_lib.make_mesh(config.sharding)
    self.model = builder.build_model(config, sharding_lib.vocab_multiple(config, self.mesh))
    self.vocab_rows = {f.embedding_name: f.vocab_size for f in self.model.features
                       if f.vocab_size}
    self.towers = task_towers(config.model_config)
    # How the task losses are weighted (ESMM's are its own); a key collision or a loss type
    # that is not implemented is a ConfigError here.
    self.loss_plan = (None if config.model_config.model_class == 'ESMM'
                      else losses.LossPlan.of(config))
    self.l2_regularization = model_params(config.model_config).l2_regularization
    self.predictions = builder.predictions_fn(config)  # logits -> EasyRec's outputs
    self.dtype = builder.compute_dtype(config)
    self.example = example
    self.batch_sharding = sharding_lib.batch_sharding(self.mesh, config.sharding)
    self.predict_batch = jax.jit(self.predict_fn, out_shardings=NamedSharding(self.mesh, P()))

  # The state lives sharded as config.sharding says: created in place (no table is ever
  # whole on one device), and the step takes and returns it in that layout. (These are
  # built on first use: they need the example batch.)
  @functools.cached_property
  def axes(self):
    """The logical axes every parameter and batch statistic declares, read once from an
    abstract init ({params, batch_stats}, trees of PartitionSpecs): the only source of a
    leaf's role (table, dense kernel, ...) and layout."""
    return sharding_lib.declared_axes(jax.eval_shape(self._variables, jax.random.PRNGKey(0)))

  @property
  def param_axes(self):
    return self.axes['params']

  @functools.cached_property
  def optimizer(self):
    return Optimizer(self.config.train_config, self.model.features, self.param_axes)

  @functools.cached_property
  def state_axes(self):
    """The logical axes of every state leaf (a tree like the state, PartitionSpecs): params
    and batch statistics as declared, optimizer state like its params, the rest replicated."""
    abstract = jax.eval_shape(self.init_state)
    return dict(jax.tree.map(lambda _: P(), abstract), params=self.param_axes,
                batch_stats=self.axes.get('batch_stats', {}),
                opt_state=self.optimizer.state_axes(abstract['opt_state']))

  @functools.cached_property
  def _state_layout(self):
    return sharding_lib.state_sharding(self.mesh, self.config.sharding,
                                       jax.eval_shape(self.init_state), self.state_axes)

  @property
  def state_sharding(self):
    return self._state_layout[0]

  @functools.cached_property
  def create_state(self):
    """init_state(seed), jitted to give the state in its sharded layout."""
    return jax.jit(self.init_state, out_shardings=self.state_sharding)

  @functools.cached_property
  def train_step(self):
    """step(state, batch), jitted on the mesh; the state is donated."""
    sharding_lib.check_batch(self.config, self.mesh)
    return jax.jit(self.step, in_shardings=(self.state_sharding, self.batch_sharding),
                   out_shardings=(self.state_sharding, NamedSharding(self.mesh, P())),
                   donate_argnums=0)

  def init_state(self, seed=None, learning_rate=None):
    """A fresh state; seed and learning_rate default to the config's (either may be traced)."""
    seed = self.config.seed if seed is None else seed
    if learning_rate is None:
      learning_rate = base_learning_rate(self.config.train_config)
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = nn.meta.unbox(self._variables(init_key))  # the state holds plain arrays
    params = variables['params']
    return dict(step=jnp.zeros((), jnp.int32), params=params,
                batch_stats=variables.get('batch_stats', {}), opt_state=self.optimizer.init(params),
                rng=dropout_key, hparams=dict(learning_rate=jnp.asarray(learning_rate, jnp.float32)),
                nonfinite_step=jnp.full((), -1, jnp.int32), nonfinite=jnp.zeros((), jnp.int32))

  def _variables(self, key):
    """model.init's variables, each boxed with its declared logical axes, and the learnt
    loss weights (loss_weight_strategy Uncertainty), 0 at first as in EasyRec."""
    variables = self.model.init({'params': key}, self.example['features'], train=False)
    learnt = self.loss_plan.learnt_keys if self.loss_plan else ()
    if learnt:
      scalar = lambda: nn.LogicallyPartitioned(jnp.zeros((), jnp.float32), names=())
      variables = dict(variables, params=dict(variables['params'],
                                              **{LOSS_WEIGHT: {k: scalar() for k in learnt}}))
    return variables

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state: the target of a restore."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        jax.eval_shape(self.init_state), self.state_sharding)

  def layout(self):
    """Log lines: the mesh, each table's layout, dimensions kept whole."""
    return sharding_lib.describe(self.mesh, self.state_sharding, jax.eval_shape(self.init_state),
                                 self.state_axes, self.vocab_rows) + self._state_layout[1]

  def step(self, state, batch):
    """The pure train step: (state, batch) -> (state, metrics). Jitted as train_step;
    vmapped over replicas by sweeps."""
    rng = jax.random.fold_in(state['rng'], state['step'])
    # A lazy optimizer differentiates the looked-up vectors, not its tables (optimizer.py).
    dense, tables = self.optimizer.split(state['params'])

    def terms_fn(dense, perturbations):
      params = self.optimizer.merge(dense, tables)
      variables = {'params': precision.compute_params(params, self.param_axes, self.dtype),
                   'batch_stats': state['batch_stats']}
      if perturbations:
        variables['perturbations'] = perturbations
      (logits, aux), updated = self.model.apply(
          variables, batch['features'], train=True, mutable=['batch_stats'],
          rngs={'dropout': rng})
      _, terms = losses.total_loss(
          logits, aux, params, self.param_axes, batch['labels'], self.towers,
          self.l2_regularization, self.config.model_config.embedding_regularization,
          self.config.model_config.model_class, plan=self.loss_plan,
          rng=jax.random.fold_in(rng, RANDOM_LOSS_WEIGHTS), learnt=params.get(LOSS_WEIGHT))
      return terms, updated.get('batch_stats', {})

    perturbations = self.optimizer.perturbations(batch['features'])
    if self.loss_plan and self.loss_plan.pareto:
      (grads, lookup_grads), terms, batch_stats = self._pareto_gradients(
          terms_fn, dense, perturbations)
    else:
      loss_fn = lambda *args: (lambda terms, stats: (terms['total_loss'], (terms, stats)))(
          *terms_fn(*args))
      (grads, lookup_grads), (terms, batch_stats) = jax.grad(
          loss_fn, argnums=(0, 1), has_aux=True)(dense, perturbations)
    norm = self.optimizer.global_norm(grads, lookup_grads, state['params'], batch['features'])
    params, opt_state = self.optimizer.apply(grads, lookup_grads, state['opt_state'],
                                             state['params'], batch['features'],
                                             state['hparams']['learning_rate'])
    step = state['step']
    # Remember the first step whose loss or gradient norm was not finite, and which (a
    # finite loss can come with non-finite gradients, which make the parameters NaN); the
    # loop checks at log and checkpoint time, so no step waits on a host round trip.
    bits = (jnp.where(jnp.isfinite(terms['total_loss']), 0, 1)
            | jnp.where(jnp.isfinite(norm), 0, 2))  # cadence.NONFINITE
    first = (bits > 0) & (state['nonfinite_step'] < 0)
    new_state = dict(state, step=step + 1, params=params, batch_stats=batch_stats,
                     opt_state=opt_state,
                     nonfinite_step=jnp.where(first, step, state['nonfinite_step']),
                     nonfinite=jnp.where(first, bits, state['nonfinite']))
    return new_state, dict(terms, **{GRADIENT_NORM: norm}, learning_rate=self.optimizer.rate(
        step, state['hparams']['learning_rate']))

  def _pareto_gradients(self, terms_fn, dense, perturbations):
    """use_pareto_loss_weight: the gradient of sum_k a_k L_k + regularization_loss, with a
    the Pareto weights (losses.pareto_weights) of the task losses' gradients G_k over every
    trainable value (dense parameters and looked-up embedding rows). One jacrev gives every
    G_k; a is a constant (no gradient flows through it). Returns (grads, terms, batch_stats)
    with each term and total_loss weighted by a, and a under loss_weight/<key>."""
    keys = [term.key for term in self.loss_plan.terms]

    def vector(*args):
      terms, stats = terms_fn(*args)
      return jnp.stack([terms[k] for k in keys] + [terms['regularization_loss']]), (terms, stats)

    jacobian, (terms, batch_stats) = jax.jacrev(vector, argnums=(0, 1), has_aux=True)(
        dense, perturbations)
    rows = [leaf.reshape(leaf.shape[0], -1)[:-1] for leaf in jax.tree.leaves(jacobian)]
    gram = sum(r.astype(jnp.float32) @ r.astype(jnp.float32).T for r in rows)
    weights = jax.lax.stop_gradient(losses.pareto_weights(
        gram, [term.min_weight for term in self.loss_plan.terms]))
    coefficients = jnp.concatenate([weights, jnp.ones((1,), jnp.float32)])
    grads = jax.tree.map(lambda j: jnp.tensordot(coefficients, j, axes=1).astype(j.dtype),
                         jacobian)
    terms = dict(terms, **{k: a * terms[k] for k, a in zip(keys, weights)})
    terms['total_loss'] = sum(terms[k] for k in keys) + terms['regularization_loss']
    terms.update({losses.WEIGHT_PREFIX + k: a for k, a in zip(keys, weights)})
    return grads, terms, batch_stats

  def predict_fn(self, params, batch_stats, features):
    """The pure prediction function: EasyRec's output dict of one batch."""
    logits, aux = self.model.apply({'params': params, 'batch_stats': batch_stats}, features,
                                   train=False)
    return self.predictions(logits)
