"""Layers: EasyRec's DNN/MLP (plain or as a stack of experts), gates, SENet, the MMoE layer."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    'relu': nn.relu, 'sigmoid': nn.sigmoid, 'tanh': jnp.tanh, 'elu': nn.elu, 'selu': nn.selu,
    'gelu': nn.gelu, 'swish': nn.swish, 'leaky_relu': nn.leaky_relu, 'linear': lambda x: x,
    'dice': None,  # the module Dice, with parameters: Dnn builds it
}

# Kernel initializers by their Keras names (EasyRec's MLP.initializer). The normal ones are
# truncated, as in Keras.
INITIALIZERS = {
    name: getattr(nn.initializers, name)
    for name in ('glorot_uniform', 'glorot_normal', 'he_uniform', 'he_normal', 'lecun_uniform',
                 'lecun_normal')
}


def kernel_init(name, stacked=False):
  """The initializer `name`; `stacked`: for [E, D, H] kernels, fans counted per expert."""
  return INITIALIZERS[name](batch_axis=(0,)) if stacked else INITIALIZERS[name]()


# TF's tf.layers.dense default, which EasyRec's DNN, gates and output layers use.
KERNEL_INIT = kernel_init('glorot_uniform')

# Every parameter (and batch statistic) declares its logical axes where it is created, as
# Flax partitioning metadata (model.init returns them boxed). config.sharding maps each
# name to mesh axes, and training reads a parameter's role from them (mmoe_jax/sharding.py):
# a table's first axis is 'vocab', a dense kernel ends in ('embed', 'mlp') (inputs,
# outputs), the parameters of stacked experts lead with 'expert'.
TABLE = ('vocab', 'embed')
KERNEL = ('embed', 'mlp')
UNITS = ('mlp',)  # one value per unit: biases, batch and layer norm
EXPERT = 'expert'


def declared(init, axes):
  """`init`, whose value declares the logical `axes` (one name per dimension)."""
  return nn.with_logical_partitioning(init, axes)


def dense_initializers(kernel_init=KERNEL_INIT):
  """(kernel, bias) initializers of a dense layer, with their declared axes KERNEL and UNITS:
  `dense`'s, and DenseWeights' (whose fused gates must start where `gate`'s would)."""
  return declared(kernel_init, KERNEL), declared(nn.initializers.zeros, UNITS)


def dense(features, name, kernel_init=KERNEL_INIT, use_bias=True):
  """nn.Dense with declared axes: kernel KERNEL, bias UNITS."""
  kernel, bias = dense_initializers(kernel_init)
  return nn.Dense(features, use_bias=use_bias, kernel_init=kernel, bias_init=bias, name=name)


def layer_norm(epsilon, name):
  """nn.LayerNorm with declared axes: scale and bias UNITS."""
  return nn.LayerNorm(epsilon=epsilon, scale_init=declared(nn.initializers.ones, UNITS),
                      bias_init=declared(nn.initializers.zeros, UNITS), name=name)


@dataclasses.dataclass(frozen=True)
class DnnSpec:
  """EasyRec's DNN message as plain values, and the fields its keras MLP message adds.

  The defaults are the DNN's: every layer Dense (with bias, glorot_uniform) -> BN ->
  activation -> dropout. The MLP fields set the bias, the initializer, batch norm after
  the activation, and a different last layer (None: like the other layers).
  """
  hidden_units: tuple[int, ...] = ()
  dropout_ratio: tuple[float, ...] = ()  # one value: every layer; else one per layer
  activation: str = 'relu'
  use_bn: bool = True
  use_final_bn: bool | None = None
  final_activation: str | None = None
  use_bias: bool = True
  use_final_bias: bool | None = None
  initializer: str = 'glorot_uniform'
  use_bn_after_activation: bool = False


class BatchNorm(nn.BatchNorm):
  """nn.BatchNorm whose statistics declare `axes`, as its parameters do (Flax's own
  statistics declare none): they are laid out like the units they normalize."""
  axes: tuple[str, ...] = UNITS

  def variable(self, col, name, init_fn=None, *init_args, **kwargs):
    if col == 'batch_stats':
      init_fn = declared(init_fn, self.axes)
    return super().variable(col, name, init_fn, *init_args, **kwargs)


def batch_norm(x, train, stacked=False, name=None):
  """BatchNorm with TF's tf.layers.batch_normalization defaults: momentum 0.99, epsilon 1e-3.

  Statistics per unit of the last axis; `stacked`: per expert and unit of [B, E, H].
  """
  axes = (EXPERT,) + UNITS if stacked else UNITS
  return BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                   axis=(-2, -1) if stacked else -1, axes=axes,
                   scale_init=declared(nn.initializers.ones, axes),
                   bias_init=declared(nn.initializers.zeros, axes), name=name)(x)


class Dice(nn.Module):
  """DIN's dice activation, as EasyRec's (utils/activation.py): p * x + alpha * (1 - p) * x
  with p = sigmoid(BN(x)).

  alpha: one trainable value per unit (per expert and unit when `stacked`), initialised to
  0; not a kernel, so not L2-regularised. BN: its own batch norm without scale or offset,
  epsilon 1e-9, momentum 0.99 (TF's default); batch statistics when training, else the
  moving ones in batch_stats.
  """
  stacked: bool = False  # [B, E, H]: alpha and statistics per expert and unit

  @nn.compact
  def __call__(self, x, *, train: bool):
    axes = (EXPERT,) + UNITS if self.stacked else UNITS
    alpha = self.param('alpha', declared(nn.initializers.zeros, axes), x.shape[1:], jnp.float32)
    normed = BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-9,
                       use_bias=False, use_scale=False, axes=axes,
                       axis=(-2, -1) if self.stacked else -1, name='bn')(x)
    p = nn.sigmoid(normed)
    return p * x + alpha.astype(x.dtype) * (1 - p) * x


class StackedDense(nn.Module):
  """`num_expert` independent dense layers applied as one einsum.

  The kernel is [E, D, H] (one slice per expert), so all experts run as one batched
  matmul and the expert axis can be sharded. Input [B, D] (shared by all experts),
  [B, E, D], or (`grouped`) [G, B, D] with G dividing E, expert e reading x[e // (E / G)]
  (PLE: G tasks of E / G experts each, a task's input read by its experts without a
  copy for each). Output [B, E, H].
  """
  features: int
  num_expert: int
  use_bias: bool = True
  initializer: str = 'glorot_uniform'
  grouped: bool = False  # a 3-d input is [G, B, D]

  @nn.compact
  def weights(self, in_dim):
    """(kernel [E, D, H], bias [E, H] or None), declared, not applied (`stacked_dnn`)."""
    e = self.num_expert
    kernel = self.param('kernel', declared(kernel_init(self.initializer, stacked=True),
                                           (EXPERT,) + KERNEL), (e, in_dim, self.features))
    bias = self.param('bias', declared(nn.initializers.zeros, (EXPERT,) + UNITS),
                      (e, self.features)) if self.use_bias else None
    return kernel, bias

  def __call__(self, x):
    kernel, bias = self.weights(x.shape[-1])
    return stacked_dense(x, kernel, bias, self.grouped)


def stacked_dense(x, kernel, bias, grouped=False):
  """StackedDense's product: x [B, D], [B, E, D] or (grouped) [G, B, D] -> [B, E, H]."""
  e, in_dim, features = kernel.shape
  if x.ndim == 2:
    y = jnp.einsum('bd,edh->beh', x, kernel)
  elif grouped:
    g, batch = x.shape[0], x.shape[1]
    per_input = kernel.reshape(g, e // g, in_dim, features)
    y = jnp.einsum('gbd,gkdh->bgkh', x, per_input).reshape(batch, e, features)
  else:
    y = jnp.einsum('bed,edh->beh', x, kernel)
  return y if bias is None else y + bias


class Dnn(nn.Module):
  """EasyRec's DNN (and keras MLP): per layer Dense -> BatchNorm (use_bn) -> activation -> dropout.

  With num_expert > 0 every layer is a StackedDense: the module is `num_expert`
  experts with their own weights and batch statistics, [B, D] -> [B, E, H]; `grouped`:
  the input is [G, B, D], G groups of E / G experts, each reading its block (StackedDense).
  Unlike EasyRec's built-in MMoE (whose experts never see `is_training`), batch norm
  and dropout here always follow `train`.
  """
  spec: DnnSpec
  num_expert: int = 0  # 0: a plain DNN, [B, D] -> [B, H]
  grouped: bool = False  # stacked: a 3-d input is [G, B, D]

  @nn.compact
  def __call__(self, x, *, train: bool):
    s = self.spec
    stacked = bool(self.num_expert)  # batch statistics per expert too
    for i, units in enumerate(s.hidden_units):
      use_bn, use_bias, activation, dropout = dnn_layer(s, i)
      if self.num_expert:
        x = StackedDense(units, self.num_expert, use_bias, s.initializer, self.grouped and i == 0,
                         name=f'dnn_{i}')(x)
      else:
        x = dense(units, f'dnn_{i}', kernel_init(s.initializer), use_bias)(x)
      if use_bn and not s.use_bn_after_activation:
        x = batch_norm(x, train, stacked, name=f'bn_{i}')
      if activation == 'dice':  # a layer with its own parameters and statistics
        x = Dice(stacked, name=f'act_{i}')(x, train=train)
      else:
        x = ACTIVATIONS[activation](x)
      if use_bn and s.use_bn_after_activation:
        x = batch_norm(x, train, stacked, name=f'bn_{i}')
      if dropout > 0:
        x = nn.Dropout(dropout, deterministic=not train)(x)
    return x


def dnn_layer(spec, i):
  """(use_bn, use_bias, activation, dropout ratio) of layer i of the DNN `spec`: the last
  layer's may differ (use_final_bn, use_final_bias, final_activation)."""
  n = len(spec.hidden_units)
  last = i == n - 1
  final = lambda value, final_value: final_value if last and final_value is not None else value
  dropout = spec.dropout_ratio * n if len(spec.dropout_ratio) == 1 else spec.dropout_ratio
  return (final(spec.use_bn, spec.use_final_bn), final(spec.use_bias, spec.use_final_bias),
          final(spec.activation, spec.final_activation), dropout[i] if i < len(dropout) else 0)


def plain(spec):
  """Whether every layer of the DNN `spec` is dense -> activation: no batch norm, no dice
  (parameters and statistics of their own), no dropout (a random mask per module)."""
  layers = [dnn_layer(spec, i) for i in range(len(spec.hidden_units))]
  return all(not bn and activation != 'dice' and not dropout
             for bn, _, activation, dropout in layers)


class DnnWeights(nn.Module):
  """The stacked weights of Dnn(spec, num_expert), as Dnn declares them (dnn_<i>/kernel,
  bias), not applied: a list of (kernel, bias) per layer, for `stacked_dnn`."""
  spec: DnnSpec
  num_expert: int

  @nn.compact
  def __call__(self, in_dim):
    weights = []
    for i, units in enumerate(self.spec.hidden_units):
      weights.append(StackedDense(units, self.num_expert, dnn_layer(self.spec, i)[1],
                                  self.spec.initializer, name=f'dnn_{i}').weights(in_dim))
      in_dim = units
    return weights


def stacked_dnn(spec, x, nets):
  """Several plain (`plain`) stacked DNNs of the same `spec` on the same x [B, D], as one:
  each layer's kernels (DnnWeights of each net) concatenated on the expert axis, one
  einsum. [B, E_1 + E_2 + ..., H]: the nets' experts in order, as each Dnn would give them."""
  for i, layers in enumerate(zip(*nets)):
    kernel = jnp.concatenate([k for k, _ in layers])
    biases = [b for _, b in layers]
    bias = None if biases[0] is None else jnp.concatenate(biases)
    x = ACTIVATIONS[dnn_layer(spec, i)[2]](stacked_dense(x, kernel, bias))
  return x


def gate(x, num_expert, name):
  """One task's gate (Ma et al., KDD 2018, eq. 5): softmax(x W + b) over the experts, [B, E].

  Call it inside a compact module: its Dense becomes that module's submodule `name`.
  """
  return nn.softmax(dense(num_expert, name)(x), axis=-1)


class DenseWeights(nn.Module):
  """(kernel [D, H], bias [H]) as `dense` declares them, not applied (`gates`)."""
  features: int

  @nn.compact
  def __call__(self, in_dim):
    kernel, bias = dense_initializers()
    return (self.param('kernel', kernel, (in_dim, self.features)),
            self.param('bias', bias, (self.features,)))


def gates(x, sizes, names):
  """Gates on the same x, gate k over sizes[k] experts named names[k], as `gate` gives
  them, from one matmul over their concatenated kernels (one read of x, forward and
  backward, instead of one per gate). Call it inside a compact module."""
  weights = [DenseWeights(size, name=name)(x.shape[-1]) for size, name in zip(sizes, names)]
  logits = (x @ jnp.concatenate([k for k, _ in weights], axis=1)
            + jnp.concatenate([b for _, b in weights]))
  return [nn.softmax(z, axis=-1) for z in jnp.split(logits, np.cumsum(sizes)[:-1], axis=-1)]


def mix(gate_weights, experts):
  """The gated mixture (eq. 6): sum_e gate[e] * expert_e, [B, E] x [B, E, H] -> [B, H]."""
  return jnp.einsum('be,beh->bh', gate_weights, experts)


class MMoELayer(nn.Module):
  """EasyRec's keras MMoE layer (class_name 'MMoE'): one output per task, as a list.

  With expert_mlp, the input [B, D] feeds `num_expert` stacked MLP experts and the
  gates. Without, the input is a list: `num_expert` expert outputs [B, H], then the
  gate input [B, D']. shared_gate (not in EasyRec) uses one gate for every task, so
  every task gets the same mixture: a one-gate MoE (OMoE).

  Returns (outputs, aux): outputs is a list of num_task [B, H]; aux['gate_weights'] the
  list of the tasks' [B, E] gates.
  """
  num_task: int
  num_expert: int
  expert_mlp: DnnSpec | None = None
  shared_gate: bool = False

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    if self.expert_mlp is not None:
      experts = Dnn(self.expert_mlp, self.num_expert, name='expert_mlp')(inputs, train=train)
      gate_input = inputs
    else:
      experts = jnp.stack(inputs[:self.num_expert], axis=1)  # [B, E, H]
      gate_input = inputs[self.num_expert]
    if self.shared_gate:
      weights = [gate(gate_input, self.num_expert, 'gate')] * self.num_task
    else:
      weights = [gate(gate_input, self.num_expert, f'gate_{k}') for k in range(self.num_task)]
    return [mix(w, experts) for w in weights], dict(gate_weights=weights)


class SENet(nn.Module):
  """FiBiNET's squeeze-excitation over field embeddings (EasyRec's keras SENet).

  Input: a list of F field embeddings [B, D_f], each D_f divisible by g =
  num_squeeze_group. Squeeze: per field and group of D_f / g units, the max and the
  mean, z [B, F*g*2]. Excite: Dense(max(1, F*g*2 // reduction_ratio), relu, he_normal),
  then Dense(sum D_f, glorot_normal), the weights. Output [B, sum D_f]: concat * weights
  (+ concat with use_skip_connection), then LayerNorm (use_output_layer_norm).
  """
  reduction_ratio: int = 4
  num_squeeze_group: int = 2
  use_skip_connection: bool = True
  use_output_layer_norm: bool = True

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    del train  # no dropout or batch norm
    g = self.num_squeeze_group
    squeezed = []
    for emb in inputs:
      groups = emb.reshape(emb.shape[:-1] + (g, emb.shape[-1] // g))
      squeezed += [groups.max(axis=-1), groups.mean(axis=-1)]  # [B, g] each
    z = jnp.concatenate(squeezed, axis=-1)
    x = jnp.concatenate(inputs, axis=-1)
    a = nn.relu(dense(max(1, z.shape[-1] // self.reduction_ratio), 'W1',
                      nn.initializers.he_normal())(z))
    weights = dense(x.shape[-1], 'W2', nn.initializers.glorot_normal())(a)
    out = x * weights
    if self.use_skip_connection:
      out = out + x
    if self.use_output_layer_norm:
      out = layer_norm(1e-3, 'output_ln')(out)  # Keras LayerNormalization's
    return out


def l2_loss(tree):
  """TF's tf.nn.l2_loss summed over a pytree: sum(x ** 2) / 2."""
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) / 2 for x in jax.tree.leaves(tree))
