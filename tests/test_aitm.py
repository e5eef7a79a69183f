"""The multi-task backbone layers: EasyRec's AITMTower, the CGC layer (PLE's extraction
network as a backbone layer, not EasyRec's), blocks with no layer, EasyRec's AITM and
SimpleMultiTask backbone samples, and configs/aitm.py.

AITMTower against a plain loop written from ../shared/reference/mtl.md section 5, CGC
against the built-in PLE (section 3) with the same parameters.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aitm
import ple
import reference
from conftest import EASYREC_CONFIGS
from mmoe_jax import sharding as sharding_lib
from mmoe_jax.builder import build_model
from mmoe_jax.config import ConfigError, complete, easyrec, load_config, validate
from mmoe_jax.models import MultiTaskModel
from mmoe_jax.models.layers import DnnSpec
from mmoe_jax.models.multi_task import AITMTower
from mmoe_jax.models.ple import PLE
from mmoe_jax.training import losses, run_dir, train_lib
from test_backbone import GROUP_ALL, block, mlp, raw_config, run
from test_model import init, random_features

MULTI_TASK = os.path.join(EASYREC_CONFIGS, 'multi_task')


def small(config):
  """A config (dict or ConfigDict) as a dict, its tables cut to 100 rows: fast to build."""
  raw = config if isinstance(config, dict) else config.to_dict()
  for feature in raw['feature_configs']:
    feature['hash_bucket_size'] = min(feature['hash_bucket_size'], 100)
  return raw


def shapes(model, batch=8):
  """(parameter shapes, logits shapes) of `model`, traced without compiling (fast)."""
  features = random_features(model, batch)
  params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), features)))
  logits, _ = jax.eval_shape(lambda p: model.apply(p, features), params)
  return jax.tree.map(lambda x: x.shape, params['params']), logits


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


# ---- AITMTower ---------------------------------------------------------------------------

def aitm_reference(params, inputs, d, transfer_layers):
  """mtl.md 5: earlier towers through the transfer MLP (dense -> relu layers here), per
  position i its own q_i, k_i, v_i; this tower's query against every key; row 0."""
  towers = [inputs[0]] + [
      np.asarray(reference.dnn(h, params['transfer'], None, transfer_layers, False))
      if transfer_layers else h for h in inputs[1:]]
  project = lambda kind, i: towers[i] @ params[f'{kind}_{i}']['kernel'] + \
      params[f'{kind}_{i}']['bias']
  n = len(towers)
  q0 = project('query', 0)
  scores = np.stack([np.sum(q0 * project('key', j), -1) / np.sqrt(d) for j in range(n)], -1)
  weights = softmax(scores)  # [B, n], over positions
  return sum(weights[:, j:j + 1] * project('value', j) for j in range(n))


def aitm_inputs(widths, batch=6, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(widths))
  return [jax.random.normal(k, (batch, w)) for k, w in zip(keys, widths)]


@pytest.mark.parametrize('widths, project_dim, transfer', [
    ((4, 6), 0, 0), ((4, 6, 5), 3, 0), ((4, 6, 6), 0, 1), ((5, 5), 7, 2)])
def test_aitm_tower_matches_the_loop(widths, project_dim, transfer):
  spec = DnnSpec(hidden_units=(5,) * transfer, use_bn=False) if transfer else None
  layer = AITMTower(project_dim=project_dim, transfer_mlp=spec)
  inputs = aitm_inputs(widths)
  params = nn.meta.unbox(layer.init(jax.random.PRNGKey(1), inputs, train=False))['params']
  # Non-zero biases, so that a projection without its bias would be caught.
  params = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size).reshape(p.shape) / p.size, params)
  got = layer.apply({'params': params}, inputs, train=False)
  d = project_dim or widths[0]  # the default: the width of input 0
  assert got.shape == (6, d)
  assert params['query_1']['kernel'].shape == ((5 if transfer else widths[1]), d)
  want = aitm_reference(jax.tree.map(np.asarray, params), [np.asarray(x) for x in inputs], d,
                        transfer)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('stop_gradient', [True, False])
def test_aitm_stop_gradient_blocks_the_earlier_towers(stop_gradient):
  layer = AITMTower(stop_gradient=stop_gradient,
                    transfer_mlp=DnnSpec(hidden_units=(4,), use_bn=False))
  inputs = aitm_inputs((4, 3, 3))
  variables = layer.init(jax.random.PRNGKey(1), inputs, train=False)
  grads = jax.grad(lambda xs: jnp.sum(layer.apply(variables, xs, train=False) ** 2))(inputs)
  assert np.abs(grads[0]).max() > 0
  for g in grads[1:]:
    assert (np.abs(g).max() == 0) == stop_gradient


def test_aitm_projections_are_not_l2_regularized():
  """EasyRec's l2_regularization reaches every Dense kernel of the model but AITM's
  query/key/value projections (built without a regularizer): the transfer MLP's and the
  MLP blocks' kernels, the towers' and the outputs'."""
  model = build_model(validate(small(load_config(os.path.join(os.path.dirname(aitm.__file__),
                                                              'aitm.py:tiny')))))
  boxed = model.init(jax.random.PRNGKey(0), random_features(model, 4))
  axes = sharding_lib.declared_axes(boxed)['params']
  params = nn.meta.unbox(boxed)['params']
  for leaf, logical in zip(jax.tree.leaves(params), jax.tree.leaves(axes)):
    assert len(logical) == leaf.ndim and None not in logical  # every axis named
  aitm_block = params['backbone']['cvr_aitm']
  assert axes['backbone']['cvr_aitm']['query_0']['kernel'] == jax.sharding.PartitionSpec(
      'embed', 'attention')
  kernels = [aitm_block['transfer']['dnn_0']['kernel']]
  kernels += [params['backbone'][b]['dnn_0']['kernel']
              for b in ('share_bottom', 'ctr_tower', 'cvr_tower')]
  kernels += [params[f'{kind}_{t}']['dnn_0' if kind == 'tower' else 'kernel']
              for kind in ('tower', 'output') for t in ('ctr', 'cvr')]
  kernels = [k['kernel'] if isinstance(k, dict) else k for k in kernels]
  want = sum(np.sum(np.square(np.asarray(k, np.float64))) / 2 for k in kernels)
  np.testing.assert_allclose(losses.kernel_l2(params, axes), want, rtol=1e-6)
  projections = [aitm_block[f'{kind}_{i}']['kernel'] for kind in ('query', 'key', 'value')
                 for i in range(2)]
  assert all(np.abs(np.asarray(p)).sum() > 0 for p in projections)  # there, just not counted


# ---- CGC versus the built-in PLE ---------------------------------------------------------

def ple_twins(use_bn):
  """configs/ple.py:tiny cut to its first extraction network, and a backbone of one CGC
  block with the same fields reading the group `all`, under the same towers."""
  raw = ple.get_config('tiny').to_dict()
  net = raw['model_config']['ple']['extraction_networks'][0]
  for key in ('task_expert_net', 'share_expert_net'):
    net[key]['use_bn'] = use_bn
  raw['model_config']['ple']['extraction_networks'] = (net,)
  cgc = dict(num_task=2, **{k: v for k, v in net.items() if k != 'network_name'})
  twin = raw_config(block('cgc', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=cgc)))
  twin['model_config']['model_params']['task_towers'] = raw['model_config']['ple']['task_towers']
  return validate(small(raw)), validate(small(twin)), net['network_name']


def as_cgc_tree(tree, network):
  """A built-in PLE's params (or batch_stats) under the backbone's names: the network's
  subtree becomes block 'cgc', gate_<tower> becomes gate_<task index>."""
  out = {k: v for k, v in tree.items() if k != network}
  names = {'gate_ctr': 'gate_0', 'gate_cvr': 'gate_1'}
  out['backbone'] = {'cgc': {names.get(k, k): v for k, v in tree[network].items()}}
  return out


def test_cgc_block_equals_the_builtin_ple_with_the_same_parameters():
  """In training, with batch norm in the experts: logits, gates and batch statistics."""
  builtin_config, cgc_config, network = ple_twins(use_bn=True)
  builtin, backbone = build_model(builtin_config), build_model(cgc_config)
  assert isinstance(builtin, PLE) and isinstance(backbone, MultiTaskModel)
  features = random_features(builtin, 16)
  variables = init(builtin, features)
  mapped = {k: as_cgc_tree(v, network) for k, v in variables.items()}
  tree_shapes = lambda tree: jax.tree.map(jnp.shape, tree)
  expected = jax.eval_shape(lambda: init(backbone, features))
  assert tree_shapes(mapped) == tree_shapes(expected)  # the same parameters, renamed
  (want, want_aux), want_stats = builtin.apply(variables, features, train=True,
                                               mutable=['batch_stats'])
  (got, got_aux), got_stats = backbone.apply(mapped, features, train=True,
                                             mutable=['batch_stats'])
  for t in ('ctr', 'cvr'):
    np.testing.assert_allclose(got[t], want[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_aux['gate_weights'][t],
                               want_aux['gate_weights'][f'{network}/{t}'], rtol=1e-6, atol=1e-7)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got_stats, {'batch_stats': as_cgc_tree(want_stats['batch_stats'], network)})


def test_stacked_cgc_blocks_pass_the_shared_input_and_gates_are_distributions():
  net = dict(expert_num_per_task=2, share_num=1, task_expert_net=dict(hidden_units=(8,)),
             share_expert_net=dict(hidden_units=(8,)))
  raw = raw_config(
      block('layer1', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=dict(
          net, num_task=2, is_last_layer=False))),
      block('layer2', ['layer1'], keras_layer=dict(class_name='CGC', cgc=dict(net, num_task=2))))
  _, _, aux = run(build_model(validate(small(raw))), batch=16, train=True)
  gates = aux['gate_weights']
  assert set(gates) == {'layer1/0', 'layer1/1', 'layer1/share', 'ctr', 'cvr'}
  assert gates['layer1/share'].shape == (16, 2 * 2 + 1) and gates['ctr'].shape == (16, 2 + 1)
  for g in gates.values():
    assert np.all(np.asarray(g) >= 0)
    np.testing.assert_allclose(np.asarray(g).sum(-1), 1.0, rtol=1e-6)


# ---- errors ------------------------------------------------------------------------------

AITM_BLOCKS = (
    block('bottom', [GROUP_ALL], keras_layer=mlp(8)),
    block('a', ['bottom'], keras_layer=mlp(4)),
    block('b', ['bottom'], keras_layer=mlp(4)),
    block('b_aitm', ['b', 'a'], merge_inputs_into_list=True,
          keras_layer=dict(class_name='AITMTower', aitm=dict(transfer_mlp=dict(hidden_units=(4,))))),
)


def with_block(index, **changes):
  blocks = list(AITM_BLOCKS)
  blocks[index] = dict(blocks[index], **changes)
  return raw_config(*blocks, output_blocks=('a', 'b_aitm'))


CGC = dict(num_task=2, expert_num_per_task=1, task_expert_net=dict(hidden_units=(4,)))


@pytest.mark.parametrize('raw, match', [
    (with_block(3, inputs=(dict(block_name='b'),)),
     r"blocks\[3\] \(block 'b_aitm'\)\.keras_layer \(AITMTower\): AITMTower takes a list "
     r".* at least two .* got a list of 1: \[B, 4\]"),
    (with_block(3, merge_inputs_into_list=False),
     r"\(block 'b_aitm'\)\.keras_layer \(AITMTower\): AITMTower takes a list .* got a \[B, 8\]"),
    (with_block(3, keras_layer=dict(class_name='AITMTower', aitm=dict(
        transfer_mlp=dict(hidden_units=(4,), activation='reluu')))),
     r"\(AITMTower\): aitm\.transfer_mlp\.activation: 'reluu' is not one of"),
    (with_block(3, inputs=(dict(block_name='b'), dict(block_name='a'),
                           dict(block_name='bottom'))),
     r"\(AITMTower\): aitm\.transfer_mlp: one MLP transfers every earlier tower, so their "
     r'widths must agree; got list of 3: \[B, 4\], \[B, 4\], \[B, 8\]'),
    (with_block(3, keras_layer=dict(class_name='AITMTower', mlp=dict(hidden_units=(4,)))),
     r"class 'AITMTower' takes its parameters in keras_layer\.aitm; got keras_layer\.mlp"),
    (raw_config(block('cgc', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=dict(
        CGC, num_task=0)))),
     r"\(block 'cgc'\)\.keras_layer \(CGC\): cgc\.num_task and cgc\.expert_num_per_task must "
     r"be set .* \(CGC is mmoe_jax's layer, not EasyRec's\)"),
    (raw_config(block('cgc', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=dict(
        CGC, share_num=1, share_expert_net=dict(hidden_units=(6,)))))),
     r"cgc\.share_expert_net\.hidden_units: .* task_expert_net ends in 4, share_expert_net in "
     r"6 \(CGC is mmoe_jax's layer, not EasyRec's\)"),
    (raw_config(block('cgc', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=dict(
        CGC, share_num=1)))),
     r'cgc\.share_expert_net: share_num 1 needs shared experts'),
    (raw_config(block('cgc', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=dict(
        CGC, is_last_layer=False)))),
     r"the output of block 'cgc' is a list of 3, one per task tower, but model_params has 2"),
    (raw_config(block('m', [GROUP_ALL], keras_layer=mlp(4)),
                block('cgc', ['m', 'm'], merge_inputs_into_list=True,
                      keras_layer=dict(class_name='CGC', cgc=CGC))),
     r"\(CGC\): CGC takes a \[B, D\] tensor, or the list of 2 task inputs and the shared "
     r'input .* got a list of 2'),
])
def test_layer_errors_name_the_block_and_field(raw, match):
  with pytest.raises(ConfigError, match=match):
    validate(raw)


def test_unknown_aitm_field_is_an_error_naming_it():
  raw = with_block(3, keras_layer=dict(class_name='AITMTower', aitm=dict(projection_dim=4)))
  with pytest.raises(ConfigError, match=r"blocks\[3\]\.keras_layer\.aitm\.projection_dim: "
                                        r"unknown field of AITMTower \(did you mean "
                                        r"'project_dim'\?\)"):
    complete(raw)


# ---- blocks with no layer, EasyRec's samples, configs/aitm.py -----------------------------

def test_a_block_without_a_layer_is_its_merged_inputs():
  raw = raw_config(block('a', [GROUP_ALL], keras_layer=mlp(4)),
                   block('b', [GROUP_ALL], keras_layer=mlp(6)),
                   block('both', ['a', 'b']))
  c = validate(small(raw))
  assert c.model_config.backbone.concat_blocks == ('both',)  # the leaf: EasyRec's default
  params, _ = shapes(build_model(c))
  assert params['tower_ctr']['dnn_0']['kernel'][0] == 4 + 6
  assert 'both' not in params['backbone']  # no parameters


def test_simple_multi_task_backbone_sample_is_towers_on_the_group_all():
  c = validate(small(load_config(os.path.join(MULTI_TASK,
                                              'simple_multi_task_backbone_on_taobao.config'))))
  backbone = c.model_config.backbone
  identity, all_ = backbone.blocks  # 'all': the implicit input_layer the identity reads
  assert 'keras_layer' not in identity and 'input_layer' not in identity
  assert all_.name == 'all' and 'input_layer' in all_
  assert backbone.concat_blocks == ('identity',) and not backbone.output_blocks
  model = build_model(c)
  params, logits = shapes(model)
  width = sum(f.embedding_dim for f in model.features)
  assert params['tower_ctr']['dnn_0']['kernel'] == (width, 256)
  assert set(logits) == {'ctr', 'cvr'} and set(params) == {'embedding', 'tower_ctr', 'tower_cvr', 'output_ctr',
                                      'output_cvr'}


def test_aitm_sample_reads_and_matches_configs_aitm():
  sample = validate(load_config(os.path.join(MULTI_TASK, 'aitm_on_taobao.config')))
  m = sample.model_config
  assert m.backbone.output_blocks == ('ctr_tower', 'cvr_aitm')
  aitm_block = m.backbone.blocks[3]
  assert aitm_block.keras_layer.aitm.stop_gradient and aitm_block.keras_layer.aitm.project_dim == 0
  assert [i.block_name for i in aitm_block.inputs] == ['cvr_tower', 'ctr_tower']
  ours = validate(load_config(os.path.join(os.path.dirname(aitm.__file__), 'aitm.py:bn')))
  plain = lambda c: {k: v for k, v in c.model_config.to_dict().items() if k != 'model_params'}
  assert plain(ours) == plain(sample)  # with :bn, EasyRec's MLP defaults: the same backbone
  towers = lambda c: [(t['tower_name'], t['label_name'], t['dnn'], t['losses']) for t in
                      c.model_config.model_params.to_dict()['task_towers']]
  assert towers(ours) == towers(sample)
  params, logits = shapes(build_model(validate(small(sample))))
  assert {k: v.shape for k, v in logits.items()} == {'ctr': (8,), 'cvr': (8,)}
  assert params['backbone']['cvr_aitm']['query_0']['kernel'] == (128, 128)  # d: input 0's


def test_aitm_sample_routes_each_tower_through_its_blocks():
  """The sample's wiring, from its graph (mtl.md 5): output_blocks [ctr_tower, cvr_aitm]
  feed the towers ctr, cvr by position, and cvr_aitm reads [cvr_tower, ctr_tower] with
  stop_gradient. So logits_ctr depend on ctr_tower only, and logits_cvr on cvr_tower and
  the AITM block but send nothing into ctr_tower; a swapped input order or output mapping
  would move a gradient."""
  model = build_model(validate(small(load_config(os.path.join(MULTI_TASK,
                                                              'aitm_on_taobao.config')))))
  @jax.jit  # one compile instead of op-by-op init and gradients (seconds, not a minute)
  def largest_gradients(features):
    variables = nn.meta.unbox(model.init(jax.random.PRNGKey(0), features))
    logits = lambda p: model.apply(dict(variables, params=p), features)[0]
    return {tower: jax.tree.map(lambda g: jnp.abs(g).max(), jax.grad(
        lambda p: jnp.sum(logits(p)[tower]))(variables['params'])['backbone'])
            for tower in ('ctr', 'cvr')}

  reached = {tower: {b for b, g in grads.items() if max(jax.tree.leaves(g)) > 0}
             for tower, grads in largest_gradients(random_features(model, 8)).items()}
  assert reached == {'ctr': {'share_bottom', 'ctr_tower'},
                     'cvr': {'share_bottom', 'cvr_tower', 'cvr_aitm'}}


def test_aitm_config_trains(tmp_path):
  c = small(load_config(os.path.join(os.path.dirname(aitm.__file__), 'aitm.py:tiny')))
  c['model_dir'] = str(tmp_path / 'model')
  c['train_config'].update(num_steps=4, save_checkpoints_steps=4, log_step_count_steps=2)
  c['synthetic'].update(train_rows=600, eval_rows=300)
  final = train_lib.train_and_evaluate(c)
  assert final['step'] == 4 and 0 < final['auc_cvr'] < 1


@pytest.mark.parametrize('name', ['aitm', 'simple_multi_task_backbone'])
def test_samples_survive_the_converter_round_trip(name, tmp_path):
  path = os.path.join(MULTI_TASK, f'{name}_on_taobao.config')
  converted = tmp_path / 'converted.py'
  converted.write_text(easyrec.to_python(path))
  assert load_config(str(converted)).to_dict() == load_config(path).to_dict()


def test_recorded_pipeline_config_of_aitm_and_cgc_loads_back_equal(tmp_path):
  """The text form a run records holds the aitm and cgc messages (schema -> proto)."""
  cgc = dict(CGC, share_num=1, share_expert_net=dict(hidden_units=(4,)), is_last_layer=False)
  cgc_raw = raw_config(block('l1', [GROUP_ALL], keras_layer=dict(class_name='CGC', cgc=cgc)),
                       block('l2', ['l1'], keras_layer=dict(class_name='CGC', cgc=CGC)))
  for i, config in enumerate([load_config(os.path.join(os.path.dirname(aitm.__file__),
                                                       'aitm.py:tiny')), cgc_raw]):
    config = validate(config)
    config.model_dir = str(tmp_path / str(i))
    os.makedirs(config.model_dir)
    run_dir.write_record(config)
    assert run_dir.plain(load_config(str(tmp_path / str(i) / 'pipeline.config'))) == \
        run_dir.plain(config)
