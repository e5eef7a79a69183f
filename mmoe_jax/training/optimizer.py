"""EasyRec's optimizers from train_config, and the train step's `Optimizer`.

make_optimizer builds optax's form of the optimizer EasyRec's optimizer_builder.py builds
(TF1's, with TF1's update rules); the learning rate follows its schedule (schedules.py).
`Optimizer` is what the train step uses: every optimizer but lazy_adam_optimizer updates
every parameter; lazy_adam_optimizer keeps Adam for the dense layers but updates an
embedding table's rows, and their moments, only where the batch looks them up (TF's
LazyAdamOptimizer, which EasyRec's lazy_adam_optimizer builds). A dense Adam step reads
and writes every row of every table: with large tables that is most of a step's time.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from mmoe_jax.config import optimizer_name
from mmoe_jax.sharding import is_table
from mmoe_jax.training.schedules import learning_rate_schedule

# TF1's AdamOptimizer epsilon is 1e-8, as optax's default. (TF1 adds it to sqrt(v) before
# the bias correction, optax after: the two differ only while sqrt(v_hat) is near 1e-8.)
EPSILON = 1e-8


def make_optimizer(train_config, clip=True, learning_rate=None):
  """Returns (the optax form of train_config's optimizer, its schedule).

  clip: chain gradient_clipping_by_norm in front (the lazy optimizer clips all gradients
  itself); learning_rate: as learning_rate_schedule's `base` (None: the configured rate).
  The state's structure does not depend on the rate, so a state made with one rate
  updates with another (a sweep's replicas).
  """
  name = optimizer_name(train_config.optimizer_config)
  config = train_config.optimizer_config[name]
  schedule = learning_rate_schedule(config.learning_rate, learning_rate)
  tx = OPTIMIZERS[name](config, schedule)
  if clip and train_config.gradient_clipping_by_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(train_config.gradient_clipping_by_norm), tx)
  return tx, schedule


def adam(config, schedule):
  return optax.adam(schedule, b1=config.beta1, b2=config.beta2, eps=EPSILON)


def adamw(config, schedule):
  """EasyRec's AdamWOptimizer (TF contrib's DecoupledWeightDecayExtension over TF1 Adam):
  each step shrinks a variable by weight_decay * variable, NOT scaled by the learning rate
  (optax.adamw scales it), then takes the Adam step of the gradient."""
  return optax.chain(adam(config, schedule), optax.add_decayed_weights(-config.weight_decay))


def momentum(config, schedule):
  """TF1 MomentumOptimizer: accum = m * accum + g; var -= lr * accum (optax.sgd's order)."""
  return optax.sgd(schedule, momentum=config.momentum_optimizer_value)


def momentumw(config, schedule):
  """EasyRec's MomentumWOptimizer: as adamw, the decay of weight_decay * variable is not
  scaled by the learning rate."""
  return optax.chain(momentum(config, schedule), optax.add_decayed_weights(-config.weight_decay))


def rms_prop(config, schedule):
  """TF1 RMSPropOptimizer: ms starts at 1 (optax's default is 0); ms = decay * ms +
  (1 - decay) * g^2; mom = m * mom + lr * g / sqrt(ms + epsilon) (epsilon inside the root);
  var -= mom."""
  return optax.rmsprop(schedule, decay=config.decay, eps=config.epsilon, initial_scale=1.0,
                       eps_in_sqrt=True, momentum=config.momentum_optimizer_value)


def adagrad(config, schedule):
  """TF1 AdagradOptimizer: accum starts at initial_accumulator_value; accum += g^2;
  var -= lr * g / sqrt(accum). TF1 adds no epsilon (optax's default adds 1e-7)."""
  return optax.adagrad(schedule, initial_accumulator_value=config.initial_accumulator_value,
                       eps=0.0)


class FtrlState(NamedTuple):
  count: jax.Array  # updates applied, the schedule's step
  accum: optax.Updates  # TF1's accumulator: initial_accumulator_value + sum of g^2
  linear: optax.Updates  # TF1's linear term (z in McMahan et al.)


def ftrl(config, schedule):
  """TF1 FtrlOptimizer (ApplyFtrl; ApplyFtrlV2 with l2_shrinkage_reg), which optax lacks.

  FTRL-proximal does not step a weight: it sets it from two accumulators, so the update
  is the new weight minus the old. Per element, with p = learning_rate_power:
    g' = g + 2 * l2_shrinkage_reg * w;  n' = n + g^2
    z += g' - (n'^-p - n^-p) / lr * w
    w = (sign(z) * l1_reg - z) / (n'^-p / lr + 2 * l2_reg) if |z| > l1_reg else 0
  """
  p, l1, l2 = config.learning_rate_power, config.l1_reg, config.l2_reg

  def init(params):
    return FtrlState(count=jnp.zeros([], jnp.int32),
                     accum=optax.tree.full_like(params, config.initial_accumulator_value),
                     linear=optax.tree.zeros_like(params))

  def update(grads, state, params):
    lr = schedule(state.count)

    def one(g, w, n, z):
      n_new = n + g * g
      z = z + g + 2 * config.l2_shrinkage_reg * w - (n_new ** -p - n ** -p) / lr * w
      quadratic = n_new ** -p / lr + 2 * l2
      w_new = jnp.where(jnp.abs(z) > l1, (jnp.sign(z) * l1 - z) / quadratic, 0.0)
      return w_new - w, n_new, z

    leaves = [jax.tree.leaves(t) for t in (grads, params, state.accum, state.linear)]
    updates, accum, linear = (jax.tree.unflatten(jax.tree.structure(grads), out)
                              for out in zip(*(one(*x) for x in zip(*leaves))))
    return updates, FtrlState(optax.safe_increment(state.count), accum, linear)

  return optax.GradientTransformation(init, update)


# optimizer_config's oneof -> (its message, the learning rate's schedule) -> optax.
OPTIMIZERS = {
    'adam_optimizer': adam,
    'lazy_adam_optimizer': adam,  # the dense layers' part; Optimizer updates the tables
    'adam_async_optimizer': adam,  # PAI-TF's asynchronous Adam: synchronous steps here
    'adamw_optimizer': adamw,
    'adam_asyncw_optimizer': adamw,
    'momentum_optimizer': momentum,
    'momentumw_optimizer': momentumw,
    'rms_prop_optimizer': rms_prop,
    'adagrad_optimizer': adagrad,
    'ftrl_optimizer': ftrl,
}


def lazy_tables(features):
  """{table name: feature names that look it up} for tables only id and tag features read.

  A table that a dense feature scales (a field embedding, one row) stays dense.
  """
  tables, dense = {}, set()
  for spec in features:
    if not spec.embedding_dim:
      continue
    if spec.kind == 'dense':
      dense.add(spec.embedding_name)
    else:
      tables.setdefault(spec.embedding_name, []).append(spec.feature_name)
  return {name: tuple(f) for name, f in tables.items() if name not in dense}


class Optimizer:
  """The train step's optimizer: `split` the params, differentiate, then `apply`.

  With adam_optimizer nothing is split: the step differentiates every parameter and
  the state is optax Adam's. With lazy_adam_optimizer the step differentiates the
  dense parameters and the embeddings' `perturbations` (one per looked-up feature,
  models/embedding.py), never a whole table; `apply` sums those into one gradient per
  distinct id (a sort, static shapes) and updates just those rows. Its state is
  {dense: optax Adam's over the dense params, count, mu, nu}, mu and nu trees like the
  lazy tables.

  Which leaves are tables comes from the params' declared axes (`param_axes`, a tree like
  the params, sharding.declared_axes), and so does the layout of the state (`state_axes`).
  """

  def __init__(self, train_config, features, param_axes):
    self.lazy = optimizer_name(train_config.optimizer_config) == 'lazy_adam_optimizer'
    self.param_axes = param_axes
    # {path of a lazy table in the params: the features that look it up}; a table is a
    # leaf whose axes say so, named by its embedding_name.
    lookups = lazy_tables(features) if self.lazy else {}
    self.tables = {path: lookups[path[-1]]
                   for path, axes in traverse_util.flatten_dict(param_axes).items()
                   if is_table(axes) and path[-1] in lookups}
    self.train_config = train_config
    # For init (Adam's state does not depend on the rate) and the configured schedule.
    self.tx = make_optimizer(train_config, clip=not self.lazy)[0]
    adam = train_config.optimizer_config[optimizer_name(train_config.optimizer_config)]
    self.b1, self.b2 = adam.get('beta1'), adam.get('beta2')  # lazy Adam's rows; None if not Adam
    self.clip_norm = train_config.gradient_clipping_by_norm
    self.embedding_dims = {s.feature_name: s.embedding_dim for s in features}

  def rate(self, step, learning_rate=None):
    """The learning rate at `step` for a base rate (None: the configured one)."""
    return make_optimizer(self.train_config, learning_rate=learning_rate)[1](step)

  def split(self, params):
    """(dense params, lazy tables) of `params` (or of any tree like them, e.g. their
    axes): differentiate the first, read the second. Both keep the params' nesting."""
    if not self.tables:
      return params, {}
    flat = traverse_util.flatten_dict(params)
    tables = {path: flat.pop(path) for path in self.tables}
    return traverse_util.unflatten_dict(flat), traverse_util.unflatten_dict(tables)

  @staticmethod
  def merge(dense, tables):
    if not tables:
      return dense
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(dense),
                                         **traverse_util.flatten_dict(tables)})

  def perturbations(self, features):
    """Zeros shaped as the lazy tables' looked-up vectors, by feature name in the scope of
    the Embedding module that holds the table ({} if dense)."""
    return traverse_util.unflatten_dict({
        path[:-1] + (name,): jnp.zeros(features[name].shape + (self.embedding_dims[name],),
                                       jnp.float32)
        for path, names in self.tables.items() for name in names})

  def init(self, params):
    if not self.tables:
      return self.tx.init(params)
    dense, tables = self.split(params)
    def zeros():  # distinct buffers: the train step donates the state
      return jax.tree.map(jnp.zeros_like, tables)

    return dict(dense=self.tx.init(dense), count=jnp.zeros((), jnp.int32), mu=zeros(),
                nu=zeros())

  def state_axes(self, state):
    """The logical axes of `state` (this optimizer's, e.g. abstract): every moment those of
    its parameter, counts replicated.

    An optax state holds a tree like the params per moment (mu, nu, ...): each subtree of
    the params' structure takes their axes. (optax.tree_utils.tree_map_params finds the
    same subtrees, but by running init eagerly, which creates arrays on the device.)
    """
    def like(tx_state, axes):
      params = jax.tree.structure(axes)
      moment = lambda x: jax.tree.structure(x) == params
      return jax.tree.map(lambda x: axes if moment(x) else P(), tx_state, is_leaf=moment)

    if not self.tables:
      return like(state, self.param_axes)
    dense, tables = self.split(self.param_axes)
    return dict(dense=like(state['dense'], dense), count=P(), mu=tables, nu=tables)

  def apply(self, grads, lookup_grads, opt_state, params, features, learning_rate=None):
    """Returns (params, opt_state) after one step.

    grads: of split(params)[0]; lookup_grads: of perturbations(features); learning_rate:
    this state's base rate (a vmapped sweep's replicas each have their own), or None for
    the configured one. Adam is rebuilt around it: its state's structure does not depend on
    the rate.
    """
    tx, schedule = make_optimizer(self.train_config, clip=not self.lazy,
                                  learning_rate=learning_rate)
    if not self.tables:
      updates, opt_state = tx.update(grads, opt_state, params)
      return jax.tree.map(jnp.add, params, updates), opt_state
    dense, tables = self.split(params)
    tables, mu, nu = (traverse_util.flatten_dict(t)
                      for t in (tables, opt_state['mu'], opt_state['nu']))
    lookup_grads = traverse_util.flatten_dict(lookup_grads)
    rows = {path: self._row_grads(path, tables[path].shape[0], lookup_grads, features)
            for path in self.tables}
    if self.clip_norm > 0:  # one global norm over dense and row gradients, as dense Adam
      grads, rows = self._clip(grads, rows)
    updates, dense_state = tx.update(grads, opt_state['dense'], dense)
    dense = jax.tree.map(jnp.add, dense, updates)
    count = opt_state['count'] + 1
    # As optax.adam, so a row every step touches follows dense Adam exactly.
    lr = schedule(opt_state['count'])
    for path, (ids, g) in rows.items():
      tables[path], mu[path], nu[path] = self._update_rows(
          tables[path], mu[path], nu[path], ids, g, count, lr)
    tables, mu, nu = (traverse_util.unflatten_dict(t) for t in (tables, mu, nu))
    return self.merge(dense, tables), dict(dense=dense_state, count=count, mu=mu, nu=nu)

  def global_norm(self, grads, lookup_grads, params, features):
    """The global L2 norm of this step's gradients before clipping, as if every table
    were dense: the dense gradients and each lazy table's row gradients (EasyRec's
    global_norm/gradient_norm). XLA computes the row sums once for this and `apply`."""
    if not self.tables:
      return optax.tree.norm(grads)
    tables = traverse_util.flatten_dict(self.split(params)[1])
    lookup_grads = traverse_util.flatten_dict(lookup_grads)
    rows = {path: self._row_grads(path, tables[path].shape[0], lookup_grads, features)[1]
            for path in self.tables}
    return optax.tree.norm((grads, rows))

  def _row_grads(self, path, vocab_size, lookup_grads, features):
    """(distinct ids [n], summed gradients [n, D]) of the table at `path` over its features
    (lookup_grads: flat, by the perturbations' paths).

    n is the number of lookups, a static size; unused slots hold the id vocab_size,
    which gathers as zeros and scatters nowhere. Missing ids (-1) go there too.
    """
    names = self.tables[path]
    ids = jnp.concatenate([features[f].reshape(-1) for f in names])
    grads = [lookup_grads[path[:-1] + (f,)] for f in names]
    grads = jnp.concatenate([g.reshape(-1, g.shape[-1]) for g in grads])
    ids = jnp.where(ids >= 0, ids, vocab_size)
    unique, slot = jnp.unique(ids, size=ids.shape[0], fill_value=vocab_size,
                              return_inverse=True)
    return unique, jax.ops.segment_sum(grads, slot.reshape(-1), num_segments=ids.shape[0])

  def _clip(self, grads, rows):
    norm = optax.tree.norm((grads, {n: g for n, (_, g) in rows.items()}))
    scale = jnp.minimum(1.0, self.clip_norm / jnp.maximum(norm, 1e-30))
    grads = jax.tree.map(lambda g: g * scale, grads)
    return grads, {n: (ids, g * scale) for n, (ids, g) in rows.items()}

  def _update_rows(self, table, mu, nu, ids, g, count, lr):
    def get(x):
      return x.at[ids].get(mode='fill', fill_value=0, indices_are_sorted=True)

    def put(x, rows):
      return x.at[ids].set(rows, mode='drop', indices_are_sorted=True)

    m = self.b1 * get(mu) + (1 - self.b1) * g
    v = self.b2 * get(nu) + (1 - self.b2) * jnp.square(g)
    m_hat = m / (1 - self.b1 ** count).astype(m.dtype)
    v_hat = v / (1 - self.b2 ** count).astype(v.dtype)
    rows = get(table) - lr * (m_hat / (jnp.sqrt(v_hat) + EPSILON))
    return put(table, rows), put(mu, m), put(nu, v)
