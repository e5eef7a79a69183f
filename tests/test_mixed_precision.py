"""train_config.mixed_precision 'BF16': bf16 arithmetic, fp32 state, the same quality."""

import os

import jax
import jax.numpy as jnp
import pytest

import mmoe
from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.models import Embedding
from mmoe_jax.training import input_pipeline, precision, train_lib
from mmoe_jax.training import trainer as trainer_lib

# bf16 keeps 8 bits of mantissa: on 5,000 eval rows its AUC stays within this of fp32's.
AUC_TOLERANCE = 0.02


def test_bf16_computes_in_bf16_and_keeps_fp32_state(tiny_config):
  tiny_config.train_config.mixed_precision = 'bf16'  # either case
  config = validate(tiny_config)
  columns = data_lib.load(data_lib.input_paths(config)[0], config)
  example = input_pipeline.batch(columns, jax.numpy.arange(8))
  trainer = trainer_lib.Trainer(config, example)
  state = trainer.init_state()
  compute = precision.compute_params(state['params'], trainer.param_axes, trainer.dtype)
  assert compute['expert_dnn']['dnn_0']['kernel'].dtype == jnp.bfloat16
  assert compute['embedding']['user_id'].dtype == jnp.float32  # tables: only lookups are cast
  embedded = Embedding(trainer.model.features, trainer.dtype).apply(
      {'params': compute['embedding']}, example['features'])
  assert {e.dtype for e in embedded} == {jnp.dtype(jnp.bfloat16)}
  # Every matmul of the step (forward and backward) takes bf16 operands.
  dots = list(_dot_generals(jax.make_jaxpr(trainer.step)(state, example).jaxpr))
  assert dots and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
  state, metrics = trainer.train_step(state, example)
  assert {x.dtype for x in jax.tree.leaves((state['params'], state['opt_state']))
          if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
  assert metrics['total_loss'].dtype == jnp.float32


def _dot_generals(jaxpr):
  """Every dot_general equation of a jaxpr, nested ones (jit, custom_vjp, ...) too."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, 'jaxpr', sub)
        if hasattr(sub, 'eqns'):
          yield from _dot_generals(sub)


def test_bf16_learns_as_well_as_fp32(tmp_path):
  results = {}
  paths = {}
  for precision_name in ('', 'BF16'):
    config = mmoe.get_config('tiny')
    config.model_dir = str(tmp_path / (precision_name or 'fp32'))
    config.update(paths)
    config.synthetic.train_rows, config.synthetic.eval_rows = 20000, 5000
    config.train_config.update(num_steps=300, save_checkpoints_steps=300,
                               log_step_count_steps=100, mixed_precision=precision_name)
    config.data_config.batch_size = 256
    config.model_config.mmoe.expert_dnn.hidden_units = (64, 32)
    for feature in config.feature_configs:  # small tables: fast steps, few unseen rows
      feature.hash_bucket_size = min(feature.hash_bucket_size, 5000)
    results[precision_name] = train_lib.train_and_evaluate(config)
    data_dir = os.path.join(config.model_dir, 'data')  # the second run reads the same files
    paths = {f'{split}_input_path': os.path.join(data_dir, f'synthetic_{split}_{rows}_0.csv')
             for split, rows in (('train', 20000), ('eval', 5000))}
  fp32, bf16 = results[''], results['BF16']
  for tower in ('ctr', 'cvr'):
    oracle = fp32[f'oracle_auc_{tower}']
    for result in (fp32, bf16):  # both well above chance
      assert result[f'auc_{tower}'] > 0.5 + 0.4 * (oracle - 0.5), results
    assert bf16[f'auc_{tower}'] == pytest.approx(fp32[f'auc_{tower}'], abs=AUC_TOLERANCE)
