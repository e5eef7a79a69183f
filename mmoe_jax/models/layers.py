"""Dense building blocks: EasyRec's DNN, plain or as a stack of experts."""

import flax.linen as nn
import jax
import jax.numpy as jnp

# TF's tf.layers.dense default, which EasyRec's DNN uses.
KERNEL_INIT = nn.initializers.glorot_uniform()

ACTIVATIONS = {
    'relu': nn.relu, 'sigmoid': nn.sigmoid, 'tanh': jnp.tanh, 'elu': nn.elu, 'selu': nn.selu,
    'gelu': nn.gelu, 'swish': nn.swish, 'leaky_relu': nn.leaky_relu, 'linear': lambda x: x,
}


class StackedDense(nn.Module):
  """`num_expert` independent dense layers applied as one einsum.

  The kernel is [E, D, H] (one slice per expert), so all experts run as one batched
  matmul and the expert axis can be sharded. Input [B, D] (shared by all experts) or
  [B, E, D]; output [B, E, H].
  """
  features: int
  num_expert: int

  @nn.compact
  def __call__(self, x):
    in_dim = x.shape[-1]
    init = nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=(0,))
    kernel = self.param('kernel', init, (self.num_expert, in_dim, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.num_expert, self.features))
    spec = 'bd,edh->beh' if x.ndim == 2 else 'bed,edh->beh'
    return jnp.einsum(spec, x, kernel) + bias


class Dnn(nn.Module):
  """EasyRec's DNN message: per layer Dense -> BatchNorm (use_bn) -> activation -> dropout.

  With num_expert > 0 every layer is a StackedDense: the module is `num_expert`
  experts with their own weights and batch statistics, [B, D] -> [B, E, H].
  Unlike EasyRec's built-in MMoE (whose experts never see `is_training`), batch norm
  and dropout here always follow `train`.
  """
  hidden_units: tuple[int, ...]
  dropout_ratio: tuple[float, ...] = ()
  activation: str = 'relu'
  use_bn: bool = True
  num_expert: int = 0  # 0: a plain DNN, [B, D] -> [B, H]

  @nn.compact
  def __call__(self, x, *, train: bool):
    # Feature axes of BatchNorm: statistics are per unit, and per expert when stacked.
    bn_axes = (-2, -1) if self.num_expert else -1
    dropout = self.dropout_ratio * len(self.hidden_units) if len(
        self.dropout_ratio) == 1 else self.dropout_ratio
    for i, units in enumerate(self.hidden_units):
      if self.num_expert:
        x = StackedDense(units, self.num_expert, name=f'dnn_{i}')(x)
      else:
        x = nn.Dense(units, kernel_init=KERNEL_INIT, name=f'dnn_{i}')(x)
      if self.use_bn:
        # TF's batch_normalization defaults: momentum 0.99, epsilon 1e-3.
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                         axis=bn_axes, name=f'bn_{i}')(x)
      x = ACTIVATIONS[self.activation](x)
      if dropout and dropout[i] > 0:
        x = nn.Dropout(dropout[i], deterministic=not train)(x)
    return x


def l2_loss(tree):
  """TF's tf.nn.l2_loss summed over a pytree: sum(x ** 2) / 2."""
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) / 2 for x in jax.tree.leaves(tree))
