"""Every default in config/schema.py is EasyRec's: a table copied from EasyRec's protos.

The table is written from easy_rec/python/protos/*.proto (the file is named above each
block): `[default = x]`, or protobuf's implicit default (0, false, '', an enum's first
value) where a field has none. It is not generated from schema.py, and the test also
fails when schema.py gains an EasyRec field that is not in the table.
"""

import pytest

from mmoe_jax.config import complete, easyrec, schema

EASYREC_DEFAULTS = {
    # optimizer.proto
    'Optimizer': dict(use_moving_average=False),
    'RMSPropOptimizer': dict(momentum_optimizer_value=0.9, decay=0.9, epsilon=1.0),
    'MomentumOptimizer': dict(momentum_optimizer_value=0.9),
    'AdamOptimizer': dict(beta1=0.9, beta2=0.999),
    'MomentumWOptimizer': dict(weight_decay=1e-6, momentum_optimizer_value=0.9),
    'AdamWOptimizer': dict(weight_decay=1e-6, beta1=0.9, beta2=0.999),
    'AdamAsyncWOptimizer': dict(weight_decay=1e-6, beta1=0.9, beta2=0.999),
    'LazyAdamOptimizer': dict(beta1=0.9, beta2=0.999),
    'AdagradOptimizer': dict(initial_accumulator_value=0.1),
    'AdamAsyncOptimizer': dict(beta1=0.9, beta2=0.999),
    'FtrlOptimizer': dict(learning_rate_power=-0.5, initial_accumulator_value=0.1, l1_reg=0.0,
                          l2_reg=0.0, l2_shrinkage_reg=0.0),
    'ConstantLearningRate': dict(learning_rate=0.002),
    'ExponentialDecayLearningRate': dict(initial_learning_rate=0.002, decay_steps=4000000,
                                         decay_factor=0.95, staircase=True,
                                         burnin_learning_rate=0.0, burnin_steps=0,
                                         min_learning_rate=0.0),
    'ManualStepLearningRate': dict(initial_learning_rate=0.002, warmup=False),
    'LearningRateSchedule': dict(step=0, learning_rate=0.002),
    'CosineDecayLearningRate': dict(learning_rate_base=0.002, total_steps=4000000,
                                    warmup_learning_rate=0.0002, warmup_steps=10000,
                                    hold_base_rate_steps=0),
    'PolyDecayLearningRate': dict(end_learning_rate=0.0),  # the others are required
    'TransformerLearningRate': dict(step_scaling_rate=1.0),  # the others are required
    # train.proto
    'TrainConfig': dict(gradient_clipping_by_norm=0.0, num_steps=0, save_checkpoints_steps=1000,
                        keep_checkpoint_max=10, save_summary_steps=1000,
                        log_step_count_steps=10, fine_tune_checkpoint=''),
    # export.proto
    'ExportConfig': dict(exporter_type='final', best_exporter_metric='auc', metric_bigger=True,
                         enable_early_stop=False, early_stop_func='', early_stop_params='',
                         max_check_steps=10000, exports_to_keep=1),
    # eval.proto
    'EvalConfig': dict(num_examples=0),
    'AUC': dict(num_thresholds=200),
    'RecallAtTopK': dict(topk=5),
    'GAUC': dict(reduction='mean'),  # uid_field: required
    'SessionAUC': dict(reduction='mean'),  # session_id_field: required
    # dataset.proto (input_type is `required` with no default: its first value, CSVInput)
    'DatasetConfig': dict(batch_size=32, shuffle=True, shuffle_buffer_size=32, num_epochs=0,
                          prefetch_size=32, input_type='CSVInput', separator=',',
                          ignore_error=False, with_header=False, eval_batch_size=4096,
                          sample_weight='', file_shard=False),
    'Field': dict(input_type='STRING', default_val=''),
    # feature_config.proto
    'FeatureConfig': dict(feature_name='', feature_type='IdFeature', embedding_name='',
                          embedding_dim=0, hash_bucket_size=0, num_buckets=0, separator='|',
                          combiner='sum', raw_input_dim=1),
    'FeatureGroupConfig': dict(wide_deep='DEEP'),
    # dnn.proto
    'DNN': dict(activation='tf.nn.relu', use_bn=True),
    'MLP': dict(activation='relu', use_bn=True, use_final_bn=True, final_activation='relu',
                use_bias=False, initializer='he_uniform', use_bn_after_activation=False,
                use_final_bias=False, add_to_outputs=False),
    # tower.proto
    'TaskTower': dict(label_name='', loss_type='CLASSIFICATION', num_class=1, weight=1.0,
                      task_space_indicator_label='', in_task_space_weight=1.0,
                      out_task_space_weight=1.0, use_sample_weight=True,
                      task_space_indicator_name='', task_space_indicator_value=''),
    # loss.proto
    'Loss': dict(weight=1.0, loss_name='', learn_loss_weight=False),
    'F1ReweighedLoss': dict(f1_beta_square=1.0, label_smoothing=0.0),
    'BinaryFocalLoss': dict(gamma=2.0, ohem_ratio=1.0, label_smoothing=0.0),  # alpha: unset
    'PairwiseLoss': dict(margin=0.0, session_name='', temperature=1.0),
    'PairwiseFocalLoss': dict(gamma=2.0, session_name='', ohem_ratio=1.0, temperature=1.0),
    'PairwiseLogisticLoss': dict(temperature=1.0, session_name='', ohem_ratio=1.0,
                                 use_label_margin=False),
    'JRCLoss': dict(alpha=0.5, same_label_loss=True, loss_weight_strategy='fixed'),
    # mmoe.proto
    'MMoE': dict(num_expert=0, l2_regularization=1e-4),
    # easy_rec_model.proto (ModelParams.l2_regularization has no [default]: 0)
    'EasyRecModel': dict(model_name='', embedding_regularization=0.0,
                         loss_weight_strategy='Fixed'),
    'ModelParams': dict(l2_regularization=0.0),
    # layer.proto (MMoELayer.num_task is required: mmoe_jax's 0 means unset, see below)
    'SENet': dict(reduction_ratio=4, num_squeeze_group=2, use_skip_connection=True,
                  use_output_layer_norm=True),
    'MMoELayer': dict(num_expert=0),
    'AITMTower': dict(project_dim=0, stop_gradient=True),
    # pipeline.proto (input paths are strings in oneofs; model_dir is required)
    'EasyRecConfig': dict(train_input_path='', eval_input_path=''),
    # backbone.proto
    'InputLayer': dict(do_batch_norm=False, do_layer_norm=False, dropout_rate=0.0,
                       feature_dropout_rate=0.0, only_output_feature_list=False,
                       only_output_3d_tensor=False, output_2d_tensor_and_feature_list=False,
                       output_seq_and_normal_feature=False, wide_output_dim=0,
                       concat_seq_feature=True),
    'Input': dict(input_slice=''),  # the others are a oneof: absent unless set
    'Block': dict(input_concat_axis=-1, merge_inputs_into_list=False),
    # esmm.proto, simple_multi_task.proto, ple.proto, dbmtl.proto; tower.proto BayesTaskTower
    'ESMM': dict(l2_regularization=1e-4),
    'SimpleMultiTask': dict(l2_regularization=1e-4),
    'PLE': dict(l2_regularization=1e-4),
    'ExtractionNetwork': dict(share_num=0),
    'DBMTL': dict(num_expert=0, l2_regularization=1e-4),
    'BayesTaskTower': dict(label_name='', loss_type='CLASSIFICATION', num_class=1, weight=1.0,
                           task_space_indicator_label='', in_task_space_weight=1.0,
                           out_task_space_weight=1.0, use_sample_weight=True,
                           task_space_indicator_name='', task_space_indicator_value=''),
}

# Scalar fields with a default that EasyRec does not have: this project's own fields
# (marked `# not in EasyRec` in schema.py), and required EasyRec fields given a value that
# means unset.
NOT_EASYREC = {
    'EasyRecConfig': {'model_dir', 'seed'},  # model_dir: required in EasyRec
    'TrainConfig': {'mixed_precision', 'steps_per_dispatch', 'fine_tune_optimizer_state'},
    'DatasetConfig': {'cache_dir', 'input_mode'},
    'MMoELayer': {'num_task', 'shared_gate'},  # num_task: required in EasyRec, 0 = unset
    'ExtractionNetwork': {'expert_num_per_task'},  # required in EasyRec, 0 = unset
    'EvalMetrics': set(),
    # TorchEasyRec's Pareto loss weights, and the reduction of sample weights it uses
    'TaskTower': {'pareto_min_loss_weight'},
    'BayesTaskTower': {'pareto_min_loss_weight'},
    'EasyRecModel': {'use_pareto_loss_weight', 'sample_weight_reduction'},
}
OWN_MESSAGES = {'TFDSInput', 'Synthetic', 'TaskCorrelation', 'Sharding', 'CGC'}


def messages():
  """Every schema message under the pipeline, by name."""
  found = {}

  def collect(message):
    if message.name in found:
      return
    found[message.name] = message
    for spec in message.fields.values():
      spec = spec.item if isinstance(spec, schema.Repeated) else spec
      spec = spec.message if isinstance(spec, schema.Optional) else spec
      if isinstance(spec, schema.Message):
        collect(spec)

  collect(easyrec.PIPELINE_FILE)
  return found


def scalar_defaults(message):
  return {k for k, spec in message.fields.items()
          if k not in message.oneof and not isinstance(
              spec, (schema.Message, schema.Repeated, schema.Optional, schema.Required))}


def minimal(message):
  """The smallest dict that completes as `message`: required fields and one oneof member."""
  raw = {k: {str: 'x', int: 1, float: 1.0}[spec.kind] for k, spec in message.fields.items()
         if isinstance(spec, schema.Required)}
  if message.oneof_required:
    member = message.fields[message.oneof[0]]
    raw[message.oneof[0]] = minimal(member) if isinstance(member, schema.Message) else 'x'

  for k, spec in message.fields.items():
    if isinstance(spec, schema.Message) and k not in message.oneof and minimal(spec):
      raw[k] = minimal(spec)
  return raw


@pytest.mark.parametrize('name', sorted(EASYREC_DEFAULTS))
def test_completed_defaults_are_easyrecs(name):
  message = messages()[name]
  completed = complete(minimal(message), message)
  got = {k: completed[k] for k in EASYREC_DEFAULTS[name]}
  assert got == EASYREC_DEFAULTS[name]
  for k, v in got.items():
    assert type(v) is type(EASYREC_DEFAULTS[name][k]), k  # 0.0 is a float field, 0 an int one


def test_table_covers_every_easyrec_default():
  for name, message in messages().items():
    if name in OWN_MESSAGES:
      continue
    listed = set(EASYREC_DEFAULTS.get(name, {})) | NOT_EASYREC.get(name, set())
    assert scalar_defaults(message) == listed, name
