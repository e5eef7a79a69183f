"""Component models (MultiTaskModel): the backbone DAG, its layers, validation, training."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mmoe
import mmoe_backbone
from mmoe_jax.config import ConfigError, block_order, complete, model_params, validate
from mmoe_jax.builder import build_model
from mmoe_jax.models import MMoE, MultiTaskModel, registry
from mmoe_jax.models.backbone import InputLayer
from mmoe_jax.models.layers import SENet
from mmoe_jax.training import train_lib
from mmoe_jax.training import trainer as trainer_lib
from test_model import bn_config, init, random_features

block = mmoe_backbone.block
GROUP_ALL = dict(feature_group_name='all')


def mmoe_layer(num_task=2, num_expert=3, **kw):
  return dict(class_name='MMoE', mmoe=dict(num_task=num_task, num_expert=num_expert, **kw))


def mlp(*hidden_units, **kw):
  return dict(class_name='MLP', mlp=dict(hidden_units=hidden_units, **kw))


def raw_config(*blocks, **backbone):
  """configs/mmoe_backbone.py:tiny with these backbone blocks, as a dict."""
  raw = mmoe_backbone.get_config('tiny').to_dict()
  raw['model_config']['backbone'] = dict(blocks=blocks, **backbone)
  return raw


def run(model, batch=8, train=False):
  features = random_features(model, batch)
  variables = init(model, features)
  (logits, aux), _ = model.apply(variables, features, train=train, mutable=['batch_stats'],
                                 rngs={'dropout': jax.random.PRNGKey(1)})
  return variables, logits, aux


# ---- the seed's config -----------------------------------------------------------------

def test_config_mirrors_the_seed_backbone_sample():
  c = validate(mmoe_backbone.get_config())
  m = c.model_config
  assert m.model_class == 'MultiTaskModel' and m.model_name == 'MMoE'
  all_, senet, mmoe_block = m.backbone.blocks
  assert (all_.name, all_.inputs[0].feature_group_name) == ('all', 'all')
  assert all_.input_layer.only_output_feature_list
  assert senet.keras_layer.class_name == 'SENet' and senet.inputs[0].block_name == 'all'
  # EasyRec's SENet defaults fill in what the sample leaves out.
  assert dict(senet.keras_layer.senet) == dict(reduction_ratio=4, num_squeeze_group=2,
                                               use_skip_connection=True,
                                               use_output_layer_norm=True)
  layer = mmoe_block.keras_layer.mmoe
  assert (layer.num_task, layer.num_expert, layer.expert_mlp.hidden_units) == (2, 3, (256, 128))
  expert = layer.expert_mlp  # batch norm off, biases on: measured, see the config file
  assert (expert.use_bn, expert.use_final_bn, expert.use_bias, expert.use_final_bias,
          expert.final_activation, expert.initializer) == (False, False, True, True, 'relu',
                                                           'he_uniform')
  assert not m.model_params.task_towers[0].dnn.use_bn
  # `:bn` leaves EasyRec's defaults (dnn.proto MLP and DNN, layers/keras/blocks.py).
  easyrec = validate(mmoe_backbone.get_config('bn')).model_config
  expert = easyrec.backbone.blocks[2].keras_layer.mmoe.expert_mlp
  assert (expert.use_bn, expert.use_final_bn, expert.use_bias, expert.use_final_bias) == (
      True, True, False, False)
  assert easyrec.model_params.task_towers[1].dnn.use_bn
  assert m.backbone.concat_blocks == ('mmoe',)  # the leaf, made explicit by validation
  towers = m.model_params.task_towers
  assert [(t.tower_name, t.label_name, t.dnn.hidden_units) for t in towers] == [
      ('ctr', 'clk', (128, 64)), ('cvr', 'buy', (128, 64))]
  assert m.model_params.l2_regularization == 1e-6 and m.embedding_regularization == 5e-5
  assert 'mmoe' not in m and model_params(m) is m.model_params
  # Data, features and training are the built-in config's.
  base = mmoe.get_config()
  for key in ('data_config', 'train_config', 'feature_configs', 'synthetic'):
    assert c.to_dict()[key] == validate(base).to_dict()[key]


def test_seed_model_shapes():
  model = build_model(validate(mmoe_backbone.get_config('bn')))
  variables, logits, aux = run(model, train=True)
  params = variables['params']['backbone']
  assert params['senet']['W1']['kernel'].shape == (17 * 2 * 2, 17)  # F*g*2 -> F*g*2 // 4
  assert params['senet']['W2']['kernel'].shape == (17, 272)
  assert params['mmoe']['expert_mlp']['dnn_0']['kernel'].shape == (3, 272, 256)  # [E, D, H]
  assert 'bias' not in params['mmoe']['expert_mlp']['dnn_1']  # MLP: use_final_bias false
  assert set(logits) == {'ctr', 'cvr'} and logits['ctr'].shape == (8,)
  assert set(aux['gate_weights']) == {'ctr', 'cvr'} and aux['gate_weights']['cvr'].shape == (8, 3)


# ---- equal to the built-in MMoE ---------------------------------------------------------

def twin_configs(use_bn):
  """The built-in tiny MMoE and a backbone input_layer -> MMoE -> towers of the same shapes."""
  builtin = bn_config() if use_bn else validate(mmoe.get_config('tiny'))
  # MLP settings that make the keras MLP the built-in DNN: bias everywhere, BN as use_bn.
  expert_mlp = dict(hidden_units=(16, 8), use_bn=use_bn, use_final_bn=use_bn, use_bias=True,
                    use_final_bias=True, final_activation='relu')
  raw = raw_config(block('all', [GROUP_ALL], input_layer={}),
                   block('mmoe', ['all'], keras_layer=mmoe_layer(expert_mlp=expert_mlp)))
  raw['model_config']['model_params']['task_towers'] = builtin.model_config.mmoe.to_dict()[
      'task_towers']
  return builtin, validate(raw)


def as_backbone_tree(tree):
  """A built-in MMoE's params (or batch_stats) under the backbone model's names."""
  out = {k: v for k, v in tree.items() if k.startswith(('embedding', 'tower_', 'output_'))}
  layer = {'expert_mlp': tree['expert_dnn']}
  layer.update({f'gate_{k}': tree[f'gate_{t}'] for k, t in enumerate(('ctr', 'cvr'))
                if f'gate_{t}' in tree})
  out['backbone'] = {'mmoe': layer}
  return out


@pytest.mark.parametrize('use_bn,train', [(False, False), (True, False), (True, True)])
def test_backbone_mmoe_equals_builtin_with_the_same_parameters(use_bn, train):
  builtin_config, backbone_config = twin_configs(use_bn)
  builtin, backbone = build_model(builtin_config), build_model(backbone_config)
  assert isinstance(builtin, MMoE) and isinstance(backbone, MultiTaskModel)
  features = random_features(builtin, 16)
  variables = init(builtin, features)
  if use_bn:  # non-trivial statistics, so that inference-mode batch norm is compared too
    variables['batch_stats'] = jax.tree.map(
        lambda v: v + jax.random.uniform(jax.random.PRNGKey(2), v.shape, minval=0.1, maxval=0.5),
        variables['batch_stats'])
  mapped = {k: as_backbone_tree(v) for k, v in variables.items()}
  shapes = lambda tree: jax.tree.map(jnp.shape, tree)
  assert shapes(mapped) == shapes(init(backbone, features))  # the same parameters, renamed
  (want, want_aux), _ = builtin.apply(variables, features, train=train, mutable=['batch_stats'])
  (got, got_aux), _ = backbone.apply(mapped, features, train=train, mutable=['batch_stats'])
  for t in ('ctr', 'cvr'):
    np.testing.assert_allclose(got[t], want[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_aux['gate_weights'][t], want_aux['gate_weights'][t],
                               rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got_aux['embedding_l2'], want_aux['embedding_l2'], rtol=1e-6)


# ---- SENet ------------------------------------------------------------------------------

def senet_reference(fields, p, g, r, skip, ln):
  """FiBiNET's SENet as EasyRec's layers/keras/fibinet.py describes it, in numpy."""
  fields = [np.asarray(f, np.float64) for f in fields]
  z = []
  for f in fields:
    groups = f.reshape(f.shape[0], g, -1)
    z += [groups.max(-1), groups.mean(-1)]
  z = np.concatenate(z, axis=1)
  assert p['W1']['kernel'].shape == (len(fields) * g * 2, max(1, len(fields) * g * 2 // r))
  a = np.maximum(z @ p['W1']['kernel'] + p['W1']['bias'], 0)
  w = a @ p['W2']['kernel'] + p['W2']['bias']
  x = np.concatenate(fields, axis=1)
  out = x * w + (x if skip else 0)
  if ln:
    mean, var = out.mean(-1, keepdims=True), out.var(-1, keepdims=True)
    out = (out - mean) / np.sqrt(var + 1e-3) * p['output_ln']['scale'] + p['output_ln']['bias']
  return out


@pytest.mark.parametrize('g,r,skip,ln', [(2, 4, True, True), (1, 3, False, True),
                                         (4, 100, True, False)])
def test_senet_matches_reference(g, r, skip, ln):
  rng = np.random.default_rng(0)
  fields = [jnp.asarray(rng.normal(size=(5, d)), jnp.float32) for d in (4, 8, 12)]
  layer = SENet(reduction_ratio=r, num_squeeze_group=g, use_skip_connection=skip,
                use_output_layer_norm=ln)
  variables = nn.meta.unbox(layer.init(jax.random.PRNGKey(0), fields))
  params = jax.tree.map(lambda v: v + 0.1, variables['params'])  # non-trivial LN scale/bias
  got = layer.apply({'params': params}, fields)
  want = senet_reference(fields, jax.tree.map(np.asarray, params), g, r, skip, ln)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  assert ('output_ln' in params) == ln


# ---- the DAG ----------------------------------------------------------------------------

def test_blocks_run_in_topological_order_whatever_the_config_order():
  raw = raw_config(
      block('top', ['left', 'right'], keras_layer=mlp(4)),  # concatenates both
      block('left', ['all'], keras_layer=mlp(6)),
      block('right', ['all', 'left'], keras_layer=mlp(5)),
      block('all', [GROUP_ALL], input_layer={}))
  config = validate(raw)
  assert block_order(config.model_config.backbone) == ['all', 'left', 'right', 'top']
  assert config.model_config.backbone.concat_blocks == ('top',)  # the only leaf
  variables, logits, _ = run(build_model(config))
  params = variables['params']['backbone']
  assert params['right']['dnn_0']['kernel'].shape == (17 * 16 + 6, 5)  # all ++ left
  assert params['top']['dnn_0']['kernel'].shape == (6 + 5, 4)
  assert logits['ctr'].shape == (8,)


def test_feature_group_input_gets_an_implicit_input_layer_and_leaves_are_concatenated():
  config = validate(raw_config(block('a', [GROUP_ALL], keras_layer=mlp(4)),
                               block('b', [GROUP_ALL], keras_layer=mlp(3))))
  backbone = config.model_config.backbone
  assert [b.name for b in backbone.blocks] == ['a', 'b', 'all']
  assert 'input_layer' in backbone.blocks[2] and backbone.concat_blocks == ('a', 'b')
  variables, _, _ = run(build_model(config))
  assert variables['params']['tower_ctr']['dnn_0']['kernel'].shape == (4 + 3, 8)


# ---- validation: before anything is built, naming the block ------------------------------

SEED_BLOCKS = (block('all', [GROUP_ALL], input_layer=dict(only_output_feature_list=True)),
               block('senet', ['all'], keras_layer=dict(class_name='SENet', senet={})),
               block('mmoe', ['senet'], keras_layer=mmoe_layer(expert_mlp=dict(hidden_units=(8,)))))


def replace(blocks, index, **changes):
  return blocks[:index] + (dict(blocks[index], **changes),) + blocks[index + 1:]


@pytest.mark.parametrize('blocks,backbone,match', [
    (replace(SEED_BLOCKS, 2, inputs=(dict(block_name='senett'),)), {},
     r"blocks\[2\] \(block 'mmoe'\)\.inputs\[0\]\.block_name: no block named 'senett' "
     r"\(did you mean 'senet'\?\)"),
    (replace(SEED_BLOCKS, 1, keras_layer=dict(class_name='SENett', senet={})), {},
     r"blocks\[1\] \(block 'senet'\)\.keras_layer\.class_name: unknown layer class 'SENett' "
     r"\(did you mean 'SENet'\?\); known: AITMTower, CGC, MLP, MMoE, SENet"),
    (replace(SEED_BLOCKS, 2, name='senet'), {}, r"blocks\[2\]\.name: block 'senet' is repeated"),
    (replace(SEED_BLOCKS, 1, inputs=(dict(block_name='mmoe'),)), {},
     r'blocks form a cycle: (senet -> mmoe -> senet|mmoe -> senet -> mmoe)'),
    (replace(SEED_BLOCKS, 2, keras_layer=mmoe_layer(3, expert_mlp=dict(hidden_units=(8,)))), {},
     r"the output of block 'mmoe' is a list of 3, one per task tower, but model_params has 2"),
    (replace(SEED_BLOCKS, 1, keras_layer=dict(class_name='SENet')), {},
     r"\(block 'senet'\)\.keras_layer: class 'SENet' takes its parameters in "
     r'keras_layer\.senet; got none'),
    (replace(SEED_BLOCKS, 1, keras_layer=dict(class_name='SENet', mlp=dict(hidden_units=(4,)))),
     {}, r"class 'SENet' takes its parameters in keras_layer\.senet; got keras_layer\.mlp"),
    (replace(SEED_BLOCKS, 0, input_layer={}), {},
     r"\(block 'senet'\)\.keras_layer \(SENet\): SENet takes a list of \[B, D\] field "
     r'embeddings .* got a \[B, 272\]'),
    (replace(SEED_BLOCKS, 2, keras_layer=mmoe_layer(expert_mlp=dict(hidden_units=(8,)),
                                                    num_expert=0)), {},
     r"\(block 'mmoe'\)\.keras_layer \(MMoE\): mmoe\.num_task and mmoe\.num_expert must be set"),
    (replace(SEED_BLOCKS, 0, input_layer=dict(do_batch_norm=True, do_layer_norm=True)), {},
     r"\(block 'all'\)\.input_layer: do_batch_norm and do_layer_norm cannot both be set"),
    (replace(SEED_BLOCKS, 0, inputs=(dict(feature_group_name='al'),)), {},
     r"\(block 'all'\)\.inputs\[0\]\.feature_group_name: no feature group named 'al' "
     r"\(did you mean 'all'\?\)"),
    (SEED_BLOCKS, dict(output_blocks=('mmoe', 'senet', 'mmoee')),
     r"output_blocks\[2\]: no block named 'mmoee' \(did you mean 'mmoe'\?\)"),
    (SEED_BLOCKS, dict(output_blocks=('mmoe', 'senet')),
     r"the output of blocks 'mmoe', 'senet' \(list of 2: list of 2: .*\) must give each task "
     r'tower a \[B, D\] tensor'),
    (replace(SEED_BLOCKS, 2, inputs=(dict(block_name='all', input_slice='[1:x]'),)), {},
     r"\(block 'mmoe'\)\.inputs\[0\]: input_slice '\[1:x\]': supported forms"),
])
def test_backbone_errors_name_the_block(blocks, backbone, match):
  with pytest.raises(ConfigError, match=match):
    validate(raw_config(*blocks, **backbone))


def test_block_with_two_layers_fails_in_completion_naming_it():
  two = replace(SEED_BLOCKS, 1, input_layer={})
  with pytest.raises(ConfigError, match=r"blocks\[1\] \(Block 'senet'\): set exactly one of "
                                        r'input_layer, keras_layer \(got input_layer, keras_layer\)'):
    complete(raw_config(*two))
  with pytest.raises(ConfigError, match=r"blocks\[0\]\.input_layr \(Block 'all'\): unknown field "
                                        r"of Block \(did you mean 'input_layer'\?\)"):
    complete(raw_config(*replace(SEED_BLOCKS, 0, input_layr={})))


def test_bad_backbone_fails_before_data_is_written(tmp_path):
  raw = raw_config(*replace(SEED_BLOCKS, 1, inputs=(dict(block_name='mmoe'),)))
  raw['model_dir'] = str(tmp_path / 'model')
  with pytest.raises(ConfigError, match='cycle'):
    train_lib.train_and_evaluate(raw)
  assert not os.path.exists(raw['model_dir'])


def test_model_class_and_sections_must_agree():
  raw = mmoe.get_config('tiny').to_dict()
  raw['model_config']['model_class'] = 'MultiTaskModel'
  with pytest.raises(ConfigError, match="model_class 'MultiTaskModel' needs a "
                                        'model_config.model_params section'):
    validate(raw)
  raw = raw_config(*SEED_BLOCKS)
  raw['model_config']['model_class'] = 'MMoE'
  with pytest.raises(ConfigError, match="model_class 'MMoE' needs a model_config.mmoe"):
    validate(raw)


# ---- input_layer ------------------------------------------------------------------------

def input_layer_outputs(train=False, seed=0, **options):
  rng = np.random.default_rng(seed)
  features = [jnp.asarray(rng.normal(1.0, 2.0, size=(64, d)), jnp.float32) for d in (4, 4, 8)]
  layer = InputLayer(**options)
  variables = layer.init(jax.random.PRNGKey(0), features, train=False)
  out, _ = layer.apply(variables, features, train=train, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.PRNGKey(seed)})
  return features, out


def test_input_layer_output_forms():
  features, flat = input_layer_outputs()
  np.testing.assert_array_equal(flat, jnp.concatenate(features, -1))
  _, listed = input_layer_outputs(only_output_feature_list=True)
  assert [f.shape for f in listed] == [(64, 4), (64, 4), (64, 8)]
  _, both = input_layer_outputs(output_2d_tensor_and_feature_list=True)
  assert both[0].shape == (64, 16) and len(both[1]) == 3
  features, _ = input_layer_outputs()
  stacked = InputLayer(only_output_3d_tensor=True).apply({}, features[:2], train=False)
  assert stacked.shape == (64, 2, 4)


def test_input_layer_3d_needs_equal_dimensions_and_towers_need_2d():
  blocks = (block('all', [GROUP_ALL], input_layer=dict(only_output_3d_tensor=True)),
            block('top', ['all'], keras_layer=mlp(4)))
  with pytest.raises(ConfigError, match=r"the output of block 'top' \(\[B, 17, 4\]\) must give "
                                        r'each task tower a \[B, D\] tensor'):
    validate(raw_config(*blocks))
  raw = raw_config(*blocks)
  raw['feature_configs'][0]['embedding_dim'] = 8
  with pytest.raises(ConfigError, match=r"\(block 'all'\)\.input_layer: only_output_3d_tensor "
                                        r'stacks the features'):
    validate(raw)


def test_input_layer_norms():
  _, (flat, listed) = input_layer_outputs(do_layer_norm=True, output_2d_tensor_and_feature_list=True)
  for f in listed:  # one layer norm per feature ...
    np.testing.assert_allclose(f.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(f.std(-1), 1, atol=1e-3)
  np.testing.assert_allclose(flat.std(-1), 1, atol=1e-3)  # ... and one over the concatenation
  _, (flat, listed) = input_layer_outputs(train=True, do_batch_norm=True,
                                          output_2d_tensor_and_feature_list=True)
  np.testing.assert_allclose(flat.mean(0), 0, atol=1e-5)  # per unit over the batch
  np.testing.assert_allclose(flat.std(0), 1, atol=1e-2)
  np.testing.assert_allclose(jnp.concatenate(listed, -1), flat, rtol=1e-6)


def test_feature_dropout_drops_whole_features_in_training_only():
  rate = 0.5
  dropped_any = kept_any = False
  for seed in range(6):
    features, (flat, listed) = input_layer_outputs(
        train=True, seed=seed, feature_dropout_rate=rate, output_2d_tensor_and_feature_list=True)
    for f, x in zip(features, listed):
      if np.all(np.asarray(x) == 0):
        dropped_any = True
      else:  # kept for the whole batch, scaled by 1 / keep
        np.testing.assert_allclose(x, f / (1 - rate), rtol=1e-6)
        kept_any = True
    np.testing.assert_allclose(flat, jnp.concatenate(listed, -1), rtol=1e-6)
  assert dropped_any and kept_any
  features, (flat, listed) = input_layer_outputs(
      train=False, feature_dropout_rate=rate, output_2d_tensor_and_feature_list=True)
  np.testing.assert_array_equal(flat, jnp.concatenate(features, -1))


# ---- other architectures as configs -----------------------------------------------------

def test_shared_bottom_feeds_one_tensor_to_every_tower():
  config = validate(raw_config(block('all', [GROUP_ALL], input_layer={}),
                               block('bottom', ['all'], keras_layer=mlp(16, 8))))
  variables, logits, aux = run(build_model(config), train=True)
  assert variables['params']['backbone']['bottom']['dnn_1']['kernel'].shape == (16, 8)
  assert variables['params']['tower_cvr']['dnn_0']['kernel'].shape == (8, 8)
  assert set(logits) == {'ctr', 'cvr'} and aux['gate_weights'] == {}


def test_one_gate_moe_shares_its_gate():
  config = validate(raw_config(
      block('all', [GROUP_ALL], input_layer={}),
      block('omoe', ['all'], keras_layer=mmoe_layer(shared_gate=True,
                                                     expert_mlp=dict(hidden_units=(8,))))))
  variables, logits, aux = run(build_model(config))
  assert set(variables['params']['backbone']['omoe']) == {'expert_mlp', 'gate'}
  np.testing.assert_array_equal(aux['gate_weights']['ctr'], aux['gate_weights']['cvr'])


def test_mmoe_without_expert_mlp_takes_experts_then_gate_input():
  experts = [block(f'expert_{e}', ['all'], keras_layer=mlp(6)) for e in range(3)]
  gated = block('mmoe', ['expert_0', 'expert_1', 'expert_2', 'all'],
                keras_layer=mmoe_layer(num_expert=3), merge_inputs_into_list=True)
  config = validate(raw_config(block('all', [GROUP_ALL], input_layer={}), *experts, gated))
  variables, logits, aux = run(build_model(config))
  assert variables['params']['backbone']['mmoe']['gate_0']['kernel'].shape == (17 * 16, 3)
  assert aux['gate_weights']['ctr'].shape == (8, 3) and logits['cvr'].shape == (8,)
  # Without merge_inputs_into_list the four tensors are concatenated: a wiring error.
  with pytest.raises(ConfigError, match=r"\(block 'mmoe'\)\.keras_layer \(MMoE\): without "
                                        r'expert_mlp, MMoE takes a list of 3 expert outputs'):
    validate(raw_config(block('all', [GROUP_ALL], input_layer={}), *experts,
                        dict(gated, merge_inputs_into_list=False)))


def test_output_blocks_and_input_slice_give_each_tower_its_own_block():
  config = validate(raw_config(
      block('all', [GROUP_ALL], input_layer={}),
      block('mmoe', ['all'], keras_layer=mmoe_layer(expert_mlp=dict(hidden_units=(8,)))),
      block('ctr_head', [dict(block_name='mmoe', input_slice='[0]')], keras_layer=mlp(4)),
      block('cvr_head', [dict(block_name='mmoe', input_slice='[1]')], keras_layer=mlp(5)),
      output_blocks=('ctr_head', 'cvr_head')))
  variables, logits, aux = run(build_model(config))
  assert variables['params']['tower_ctr']['dnn_0']['kernel'].shape == (4, 8)
  assert variables['params']['tower_cvr']['dnn_0']['kernel'].shape == (5, 8)
  assert set(aux['gate_weights']) == {'mmoe/0', 'mmoe/1'}  # not the towers' direct inputs


def test_top_mlp_maps_the_backbone_output():
  config = validate(raw_config(*SEED_BLOCKS, top_mlp=dict(hidden_units=(4,))))
  variables, _, _ = run(build_model(config))
  assert variables['params']['backbone']['top_mlp']['dnn_0']['kernel'].shape == (2 * 8, 4)


def test_registering_a_layer_is_one_module_and_one_line(monkeypatch):
  class Scale(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      return x * self.param('scale', nn.initializers.ones, x.shape[-1:])

  monkeypatch.setitem(registry.LAYERS, 'Scale', registry.Layer(Scale, '', lambda p, s: s))
  config = validate(raw_config(block('all', [GROUP_ALL], input_layer={}),
                               block('scaled', ['all'], keras_layer=dict(class_name='Scale'))))
  variables, _, _ = run(build_model(config))
  assert variables['params']['backbone']['scaled']['scale'].shape == (17 * 16,)


# ---- training ---------------------------------------------------------------------------

def test_backbone_config_trains_end_to_end(tmp_path):
  config = mmoe_backbone.get_config('tiny')
  config.model_dir = str(tmp_path / 'model')
  result = train_lib.train_and_evaluate(config)
  assert result['step'] == 20
  for key in ('auc_ctr', 'auc_cvr', 'oracle_auc_ctr', 'oracle_auc_cvr'):
    assert 0 <= result[key] <= 1
  with open(os.path.join(config.model_dir, 'metrics.jsonl')) as f:
    assert [json.loads(line)['step'] for line in f] == [10, 20]
  # kernel_l2 sees the backbone's kernels: the regularization is model_params' l2 on them.
  trainer = trainer_lib.Trainer(validate(config), example=None)
  assert trainer.l2_regularization == 1e-6
  assert [t.tower_name for t in trainer.towers] == ['ctr', 'cvr']
