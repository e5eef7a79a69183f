"""The config tree, message by message, with EasyRec's field names and defaults.

Each `Message` mirrors one EasyRec protobuf message (easy_rec/python/protos/*.proto):
a field is a scalar default, `Required(type)` (a proto `required` field: an error when
unset), `Repeated(...)` (a proto `repeated` field, held as a tuple), another `Message`
(filled with its defaults when unset) or `Optional(...)` (a message whose presence
matters, as proto's HasField: absent unless set). Fields listed
in a message's `oneof` are present only when set, as in protobuf. Fields marked
`# not in EasyRec` are this project's own.
"""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Required:
  """A proto `required` field with no default, of type `kind` (int, float, str)."""
  kind: type = str


REQUIRED = Required(str)


@dataclasses.dataclass(frozen=True)
class Repeated:
  item: Any  # a Python type (int, float, str) or a Message
  default: tuple = ()  # the value when unset (proto's is always empty; ours may not be)


@dataclasses.dataclass(frozen=True)
class Optional:
  # a Message, or a scalar type (an `optional` proto field without a default, e.g. float);
  # the field is absent from the completed config unless set
  message: Any


class Message:

  def __init__(self, name, /, *, oneof=(), oneof_required=False, **fields):
    self.name = name
    self.fields = fields
    self.oneof = tuple(oneof)  # names of the fields that form the one `oneof` group
    self.oneof_required = oneof_required


# easy_rec/python/protos/dnn.proto
DNN = Message(
    'DNN',
    hidden_units=Repeated(int),
    dropout_ratio=Repeated(float),
    activation='tf.nn.relu',  # both spellings are accepted: validation strips 'tf.nn.'
    use_bn=True,
)

# easy_rec/python/protos/eval.proto
AUC = Message('AUC', num_thresholds=200)  # accepted; mmoe_jax always computes the exact AUC
EMPTY = Message('Empty')
RECALL_AT_TOPK = Message('RecallAtTopK', topk=5)
# reduction: 'mean' | 'mean_by_sample_num' | 'mean_by_positive_num'. The field is an input
# field's input_name; groups are its raw values (metrics.py, data/groups.py).
GAUC = Message('GAUC', uid_field=REQUIRED, reduction='mean')
SESSION_AUC = Message('SessionAUC', session_id_field=REQUIRED, reduction='mean')
EVAL_METRICS = Message(
    'EvalMetrics',
    oneof=('auc', 'mean_squared_error', 'mean_absolute_error', 'accuracy', 'recall_at_topk',
           'max_f1', 'root_mean_squared_error', 'gauc', 'session_auc'),
    oneof_required=True,
    auc=AUC,
    mean_squared_error=EMPTY,
    mean_absolute_error=EMPTY,
    accuracy=EMPTY,  # CLASSIFICATION towers with num_class > 1
    recall_at_topk=RECALL_AT_TOPK,  # CLASSIFICATION towers with num_class > 1
    max_f1=EMPTY,  # on probs, not EasyRec's logits (docs/metrics.md)
    root_mean_squared_error=EMPTY,
    gauc=GAUC,
    session_auc=SESSION_AUC,
)

# easy_rec/python/protos/loss.proto: the parameters of the loss types with some (the
# `loss_param` oneof of Loss). Optional(float) fields matter only when set, as in EasyRec.
F1_REWEIGHTED_LOSS = Message('F1ReweighedLoss', f1_beta_square=1.0, label_smoothing=0.0)
BINARY_FOCAL_LOSS = Message('BinaryFocalLoss', gamma=2.0, alpha=Optional(float), ohem_ratio=1.0,
                            label_smoothing=0.0)
PAIRWISE_LOSS = Message('PairwiseLoss', margin=0.0, session_name='', temperature=1.0)
PAIRWISE_FOCAL_LOSS = Message(
    'PairwiseFocalLoss',
    gamma=2.0,
    alpha=Optional(float),
    hinge_margin=Optional(float),  # proto default 1.0, but EasyRec reads it only when set
    session_name='',
    ohem_ratio=1.0,
    temperature=1.0,
)
PAIRWISE_LOGISTIC_LOSS = Message(
    'PairwiseLogisticLoss',
    temperature=1.0,
    session_name='',
    hinge_margin=Optional(float),
    ohem_ratio=1.0,
    use_label_margin=False,
)
JRC_LOSS = Message(
    'JRCLoss',
    session_name=REQUIRED,
    alpha=0.5,
    same_label_loss=True,
    loss_weight_strategy='fixed',
)
LOSS = Message(
    'Loss',
    oneof=('f1_reweighted_loss', 'binary_focal_loss', 'pairwise_loss', 'pairwise_focal_loss',
           'pairwise_logistic_loss', 'jrc_loss'),
    loss_type=REQUIRED,  # CLASSIFICATION, L2_LOSS, ORDER_CALIBRATE_LOSS, or a type of
    # training/loss_types.py
    weight=1.0,
    loss_name='',  # '' = the type's key (training/losses.py)
    learn_loss_weight=False,  # loss_weight_strategy Uncertainty: learn this loss's weight
    f1_reweighted_loss=F1_REWEIGHTED_LOSS,
    binary_focal_loss=BINARY_FOCAL_LOSS,
    pairwise_loss=PAIRWISE_LOSS,
    pairwise_focal_loss=PAIRWISE_FOCAL_LOSS,
    pairwise_logistic_loss=PAIRWISE_LOGISTIC_LOSS,
    jrc_loss=JRC_LOSS,
)

# easy_rec/python/protos/tower.proto
TASK_TOWER = Message(
    'TaskTower',
    tower_name=REQUIRED,
    label_name='',  # '' = the label_fields entry at this tower's position
    metrics_set=Repeated(EVAL_METRICS),  # () = auc (CLASSIFICATION) / mean_squared_error
    loss_type='CLASSIFICATION',  # or 'L2_LOSS'; with `losses`, resolved from them (validate)
    num_class=1,
    dnn=DNN,
    weight=1.0,
    # The per-sample loss weight (docs/training_signals.md): rows whose label field
    # task_space_indicator_label is > 0, or whose input field task_space_indicator_name
    # equals task_space_indicator_value (as a string), weigh in_task_space_weight, others
    # out_task_space_weight; times data_config.sample_weight if use_sample_weight.
    task_space_indicator_label='',
    in_task_space_weight=1.0,
    out_task_space_weight=1.0,
    losses=Repeated(LOSS),  # () = one loss of loss_type
    use_sample_weight=True,
    task_space_indicator_name='',
    task_space_indicator_value='',
    # not in EasyRec (TorchEasyRec's): under model_config.use_pareto_loss_weight, the least
    # weight of each of this tower's losses
    pareto_min_loss_weight=0.0,
)

# easy_rec/python/protos/mmoe.proto
EXPERT_TOWER = Message('ExpertTower', expert_name=REQUIRED, dnn=DNN)
MMOE = Message(
    'MMoE',
    # Deprecated in EasyRec, still read by it: one DNN per expert, so experts may differ
    # in shape (their last hidden_units must agree). Set it or expert_dnn, not both.
    experts=Repeated(EXPERT_TOWER),
    expert_dnn=DNN,
    num_expert=0,
    task_towers=Repeated(TASK_TOWER),
    l2_regularization=1e-4,
)

# easy_rec/python/protos/tower.proto: a feature group and the DNN it goes through (ESMM's groups)
TOWER = Message('Tower', input=REQUIRED, dnn=DNN)
# easy_rec/python/protos/tower.proto: DBMTL's task tower, a TaskTower that reads the relation
# outputs of other towers
BAYES_TASK_TOWER = Message(
    'BayesTaskTower',
    **TASK_TOWER.fields,
    relation_tower_names=Repeated(str),  # towers whose relation_dnn outputs this one reads
    relation_dnn=DNN,  # unset (no hidden_units): the identity
)

# easy_rec/python/protos/esmm.proto
ESMM = Message(
    'ESMM',
    groups=Repeated(TOWER),  # () = the group 'all', fed as is
    ctr_tower=TASK_TOWER,  # required in EasyRec
    cvr_tower=TASK_TOWER,  # required in EasyRec
    l2_regularization=1e-4,
)

# easy_rec/python/protos/ple.proto
EXTRACTION_NETWORK = Message(
    'ExtractionNetwork',
    network_name=REQUIRED,
    expert_num_per_task=0,  # required in EasyRec; 0 = unset, rejected by validation
    share_num=0,
    task_expert_net=DNN,  # required in EasyRec
    share_expert_net=Optional(DNN),
)
PLE = Message(
    'PLE',
    extraction_networks=Repeated(EXTRACTION_NETWORK),
    task_towers=Repeated(TASK_TOWER),
    l2_regularization=1e-4,
)

# easy_rec/python/protos/dbmtl.proto
DBMTL = Message(
    'DBMTL',
    bottom_dnn=Optional(DNN),
    expert_dnn=Optional(DNN),  # set: an MMoE of num_expert experts between bottom and towers
    num_expert=0,
    task_towers=Repeated(BAYES_TASK_TOWER),
    l2_regularization=1e-4,
)

# easy_rec/python/protos/simple_multi_task.proto
SIMPLE_MULTI_TASK = Message(
    'SimpleMultiTask',
    task_towers=Repeated(TASK_TOWER),
    l2_regularization=1e-4,
)

# easy_rec/python/protos/feature_config.proto
FEATURE_GROUP = Message(
    'FeatureGroupConfig',
    group_name=REQUIRED,
    feature_names=Repeated(str),
    wide_deep='DEEP',
)
FEATURE_CONFIG = Message(
    'FeatureConfig',
    feature_name='',  # '' = input_names[0]
    input_names=Repeated(str),
    feature_type='IdFeature',  # or 'TagFeature', 'RawFeature'
    embedding_name='',  # features with the same embedding_name share one table
    embedding_dim=0,
    hash_bucket_size=0,
    num_buckets=0,
    boundaries=Repeated(float),
    separator='|',
    vocab_list=Repeated(str),
    combiner='sum',  # TagFeature: 'sum' or 'mean'
    raw_input_dim=1,
)

# easy_rec/python/protos/dnn.proto: the MLP of keras layers (layers/keras/blocks.py).
# Defaults are the proto's, and EasyRec's MLP layer uses every one of them: its code
# passes final_activation=None, but Parameter.get_or_default returns the proto default
# for strings, so the last layer is Dense -> BN -> relu too.
MLP = Message(
    'MLP',
    hidden_units=Repeated(int),
    dropout_ratio=Repeated(float),  # per layer; layers past the end of the list get none
    activation='relu',
    use_bn=True,
    use_final_bn=True,  # batch norm on the last layer
    final_activation='relu',
    use_bias=False,
    initializer='he_uniform',  # the kernel initializer, a Keras name
    use_bn_after_activation=False,
    use_final_bias=False,
    add_to_outputs=False,  # accepted; mmoe_jax supports only false
)

# easy_rec/python/protos/layer.proto
SENET = Message(
    'SENet',
    reduction_ratio=4,
    num_squeeze_group=2,
    use_skip_connection=True,
    use_output_layer_norm=True,
)
MMOE_LAYER = Message(
    'MMoELayer',
    num_task=0,  # required in EasyRec; 0 = unset, rejected by validation
    expert_mlp=Optional(MLP),  # unset: the input is a list, experts then the gate input
    num_expert=0,
    shared_gate=False,  # not in EasyRec: one gate for every task (a one-gate MoE, OMoE)
)
AITM_TOWER = Message(
    'AITMTower',
    project_dim=0,  # optional in EasyRec; 0 = unset: the width of input 0 (as EasyRec's)
    transfer_mlp=Optional(MLP),  # unset: the earlier towers are projected as they are
    stop_gradient=True,
)
# not in EasyRec: one extraction network of PLE (a CGC layer) as a backbone layer, the
# fields of PLE's ExtractionNetwork (network_name: the block's name) and the two it
# cannot take from PLE: the number of tasks, and whether it is the last layer.
CGC = Message(
    'CGC',
    num_task=0,  # required; 0 = unset, rejected by validation
    expert_num_per_task=0,  # required; 0 = unset, rejected by validation
    share_num=0,
    task_expert_net=DNN,
    share_expert_net=Optional(DNN),
    is_last_layer=True,  # true: no shared gate, outputs the tasks'; false: the shared one too
)

# easy_rec/python/protos/keras_layer.proto (the params this project's layers read)
KERAS_LAYER = Message(
    'KerasLayer',
    oneof=('mlp', 'senet', 'mmoe', 'aitm', 'cgc'),
    class_name=REQUIRED,
    mlp=MLP,
    senet=SENET,
    mmoe=MMOE_LAYER,
    aitm=AITM_TOWER,
    cgc=CGC,  # not in EasyRec
)

# easy_rec/python/protos/backbone.proto
INPUT_LAYER = Message(
    'InputLayer',
    do_batch_norm=False,
    do_layer_norm=False,
    dropout_rate=0.0,
    feature_dropout_rate=0.0,
    only_output_feature_list=False,
    only_output_3d_tensor=False,
    output_2d_tensor_and_feature_list=False,
    output_seq_and_normal_feature=False,  # accepted; no sequence features here, so false
    wide_output_dim=0,  # accepted; mmoe_jax supports only 0
    concat_seq_feature=True,  # accepted; no effect without sequence features
)
INPUT = Message(
    'Input',
    oneof=('feature_group_name', 'block_name'),
    oneof_required=True,
    feature_group_name='',
    block_name='',
    input_slice='',  # '[i]' or '[a:b]' of a list output; EasyRec evaluates any Python
)
BLOCK = Message(
    'Block',
    oneof=('input_layer', 'keras_layer'),  # neither: the identity, its merged inputs
    name=REQUIRED,
    inputs=Repeated(INPUT),
    input_concat_axis=-1,
    merge_inputs_into_list=False,
    input_layer=INPUT_LAYER,
    keras_layer=KERAS_LAYER,
)
BACKBONE_TOWER = Message(
    'BackboneTower',
    blocks=Repeated(BLOCK),
    concat_blocks=Repeated(str),
    output_blocks=Repeated(str),
    top_mlp=Optional(MLP),
)

# easy_rec/python/protos/easy_rec_model.proto
MODEL_PARAMS = Message(
    'ModelParams',
    l2_regularization=0.0,
    task_towers=Repeated(TASK_TOWER),  # EasyRec: BayesTaskTower; its relation fields are not here
)
MODEL_CONFIG = Message(
    'EasyRecModel',
    oneof=('model_params', 'mmoe', 'esmm', 'ple', 'dbmtl', 'simple_multi_task'),
    # built in: 'MMoE', 'ESMM', 'PLE', 'DBMTL', 'SimpleMultiTask', each reading the field of
    # its name; or 'MultiTaskModel' (backbone + model_params)
    model_class=REQUIRED,
    model_name='',  # a free comment
    feature_groups=Repeated(FEATURE_GROUP),
    model_params=MODEL_PARAMS,
    mmoe=MMOE,
    esmm=ESMM,
    ple=PLE,
    dbmtl=DBMTL,
    simple_multi_task=SIMPLE_MULTI_TASK,
    embedding_regularization=0.0,
    backbone=Optional(BACKBONE_TOWER),
    loss_weight_strategy='Fixed',  # or 'Uncertainty', 'Random' (docs/training_signals.md)
    # not in EasyRec (TorchEasyRec's): weigh the task losses by the min-norm point of their
    # gradients (Pareto), each step; see docs/training_signals.md
    use_pareto_loss_weight=False,
    # not in EasyRec: how a loss averages over per-sample weights w. 'SUM_BY_NONZERO_WEIGHTS'
    # (EasyRec's TF1 reduction): sum(w l) / #(w != 0); 'WEIGHTED_MEAN' (TorchEasyRec's):
    # sum(w l) / sum(w)
    sample_weight_reduction='SUM_BY_NONZERO_WEIGHTS',
)

# not in EasyRec: a tensorflow_datasets dataset, read when data_config.input_type is
# 'TFDSInput' (train_input_path / eval_input_path then name splits: 'train', 'test', ...)
TFDS = Message(
    'TFDSInput',
    name='',  # a registered builder, e.g. 'census_income_kdd' (mmoe_jax/data/census.py)
    data_dir='',  # the prepared dataset; '' = <cache_dir>/tfds/<hash of manual_dir's files>
    manual_dir='',  # the downloaded files a manual-download builder prepares from
)

# easy_rec/python/protos/dataset.proto
FIELD = Message('Field', input_name=REQUIRED, input_type='STRING', default_val='')
DATA_CONFIG = Message(
    'DatasetConfig',
    batch_size=32,
    label_fields=Repeated(str),
    shuffle=True,
    shuffle_buffer_size=32,  # accepted; mmoe_jax shuffles the whole cached file
    num_epochs=0,
    prefetch_size=32,  # accepted; batches are sliced from the in-memory cache
    input_type='CSVInput',  # or 'ParquetInput', or 'TFDSInput' (not in EasyRec)
    separator=',',
    input_fields=Repeated(FIELD),
    ignore_error=False,
    with_header=False,
    eval_batch_size=4096,
    cache_dir='',  # not in EasyRec: '' = <model_dir>/cache
    tfds=TFDS,  # not in EasyRec: read with input_type 'TFDSInput'
    # not in EasyRec: how batches reach the train step. 'device': the whole cache on the
    # device, batches gathered inside the jitted step; 'streaming': a background thread
    # builds and transfers batches ahead of use; 'auto': device when the cache fits.
    input_mode='auto',
    sample_weight='',  # an input field whose values weigh each row's losses; '' = 1
    # with several processes, process i of n reads files i, i + n, ... of the sorted list
    # (data.shard_files) and contributes batch_size / n rows of each batch
    file_shard=False,
)

# easy_rec/python/protos/optimizer.proto
CONSTANT_LR = Message('ConstantLearningRate', learning_rate=0.002)
EXPONENTIAL_DECAY_LR = Message(
    'ExponentialDecayLearningRate',
    initial_learning_rate=0.002,
    decay_steps=4000000,
    decay_factor=0.95,
    staircase=True,
    burnin_learning_rate=0.0,  # 0: the burn-in steps hold initial_learning_rate
    burnin_steps=0,
    min_learning_rate=0.0,
)
MANUAL_STEP = Message('LearningRateSchedule', step=0, learning_rate=0.002)
MANUAL_STEP_LR = Message(
    'ManualStepLearningRate',
    initial_learning_rate=0.002,
    schedule=Repeated(MANUAL_STEP),  # steps increasing, the first > 0
    warmup=False,
)
COSINE_DECAY_LR = Message(
    'CosineDecayLearningRate',
    learning_rate_base=0.002,
    total_steps=4000000,
    warmup_learning_rate=0.0002,
    warmup_steps=10000,
    hold_base_rate_steps=0,
)
POLY_DECAY_LR = Message(
    'PolyDecayLearningRate',
    learning_rate_base=Required(float),
    total_steps=Required(int),
    power=Required(float),
    end_learning_rate=0.0,
)
TRANSFORMER_LR = Message(
    'TransformerLearningRate',
    learning_rate_base=Required(float),
    hidden_size=Required(int),
    warmup_steps=Required(int),
    step_scaling_rate=1.0,
)
LEARNING_RATE = Message(
    'LearningRate',
    oneof=('constant_learning_rate', 'exponential_decay_learning_rate',
           'manual_step_learning_rate', 'cosine_decay_learning_rate', 'poly_decay_learning_rate',
           'transformer_learning_rate'),
    oneof_required=True,
    constant_learning_rate=CONSTANT_LR,
    exponential_decay_learning_rate=EXPONENTIAL_DECAY_LR,
    manual_step_learning_rate=MANUAL_STEP_LR,
    cosine_decay_learning_rate=COSINE_DECAY_LR,
    poly_decay_learning_rate=POLY_DECAY_LR,
    transformer_learning_rate=TRANSFORMER_LR,
)
ADAM = Message('AdamOptimizer', learning_rate=LEARNING_RATE, beta1=0.9, beta2=0.999)
# Adam whose embedding tables update only the rows a batch looks up (dense Adam elsewhere)
LAZY_ADAM = Message('LazyAdamOptimizer', learning_rate=LEARNING_RATE, beta1=0.9, beta2=0.999)
# PAI-TF's asynchronous Adam; its steps here are synchronous Adam's
ADAM_ASYNC = Message('AdamAsyncOptimizer', learning_rate=LEARNING_RATE, beta1=0.9, beta2=0.999)
ADAMW = Message('AdamWOptimizer', learning_rate=LEARNING_RATE, weight_decay=1e-6, beta1=0.9,
                beta2=0.999)
ADAM_ASYNCW = Message('AdamAsyncWOptimizer', learning_rate=LEARNING_RATE, weight_decay=1e-6,
                      beta1=0.9, beta2=0.999)
RMS_PROP = Message('RMSPropOptimizer', learning_rate=LEARNING_RATE, momentum_optimizer_value=0.9,
                   decay=0.9, epsilon=1.0)
MOMENTUM = Message('MomentumOptimizer', learning_rate=LEARNING_RATE, momentum_optimizer_value=0.9)
MOMENTUMW = Message('MomentumWOptimizer', learning_rate=LEARNING_RATE, weight_decay=1e-6,
                    momentum_optimizer_value=0.9)
ADAGRAD = Message('AdagradOptimizer', learning_rate=LEARNING_RATE, initial_accumulator_value=0.1)
FTRL = Message(
    'FtrlOptimizer',
    learning_rate=LEARNING_RATE,
    learning_rate_power=-0.5,
    initial_accumulator_value=0.1,
    l1_reg=0.0,
    l2_reg=0.0,
    l2_shrinkage_reg=0.0,
)
OPTIMIZER_CONFIG = Message(
    'Optimizer',
    oneof=('adam_optimizer', 'lazy_adam_optimizer', 'rms_prop_optimizer', 'momentum_optimizer',
           'momentumw_optimizer', 'adamw_optimizer', 'adam_async_optimizer', 'adagrad_optimizer',
           'ftrl_optimizer', 'adam_asyncw_optimizer'),
    oneof_required=True,
    adam_optimizer=ADAM,
    lazy_adam_optimizer=LAZY_ADAM,
    rms_prop_optimizer=RMS_PROP,
    momentum_optimizer=MOMENTUM,
    momentumw_optimizer=MOMENTUMW,
    adamw_optimizer=ADAMW,
    adam_async_optimizer=ADAM_ASYNC,
    adagrad_optimizer=ADAGRAD,
    ftrl_optimizer=FTRL,
    adam_asyncw_optimizer=ADAM_ASYNCW,
    use_moving_average=False,  # accepted; mmoe_jax supports only false
)

# easy_rec/python/protos/train.proto
TRAIN_CONFIG = Message(
    'TrainConfig',
    optimizer_config=OPTIMIZER_CONFIG,
    gradient_clipping_by_norm=0.0,
    num_steps=0,  # 0 = run num_epochs over the training data
    save_checkpoints_steps=1000,
    keep_checkpoint_max=10,
    log_step_count_steps=10,
    save_summary_steps=1000,  # accepted; summaries are written every log_step_count_steps
    # not in EasyRec (TorchEasyRec's field): '' (fp32) or 'BF16': bf16 activations and
    # matmuls; parameters, optimizer state and the loss stay fp32
    mixed_precision='',
    # not in EasyRec: train steps per device dispatch in input_mode 'device'; it must divide
    # log_step_count_steps and save_checkpoints_steps. 0 = the largest divisor of both <= 100
    steps_per_dispatch=0,
    # warm start: a checkpoint (a run's model_dir, its checkpoints/ or one step's directory)
    # whose parameters of the same name and shape initialize a run with no checkpoint yet
    fine_tune_checkpoint='',
    # not in EasyRec (which takes optimizer slots too): whether fine_tune_checkpoint also
    # gives the optimizer state of the same name and shape
    fine_tune_optimizer_state=False,
)

# easy_rec/python/protos/eval.proto
EVAL_CONFIG = Message('EvalConfig', num_examples=0, metrics_set=Repeated(EVAL_METRICS))

# easy_rec/python/protos/export.proto (docs/serving.md): exports under model_dir/export/
EXPORT_CONFIG = Message(
    'ExportConfig',
    exporter_type='final',  # final | latest | best | none
    best_exporter_metric='auc',  # a metric name as evaluation reports it, e.g. auc_ctr
    metric_bigger=True,
    enable_early_stop=False,
    early_stop_func='',  # '' = stop when max_check_steps pass without improvement
    early_stop_params='',
    max_check_steps=10000,
    exports_to_keep=1,
)

# not in EasyRec: the embedded synthetic data used when train_input_path is '': the taobao
# click/buy log (mmoe_jax/data/synthetic.py), or with task_correlation set, the MMoE paper's
# regression tasks of a given correlation (mmoe_jax/data/task_correlation.py).
TASK_CORRELATION = Message(
    'TaskCorrelation',
    correlation=0.5,  # cos(w1, w2), in [-1, 1]
    input_dim=100,
    scale=1.0,
    num_sines=10,
    noise_std=0.1,
    sines_seed=0,
)
# train_rows 0: sized for the run, one epoch of num_steps x batch_size, capped (data/__init__.py)
SYNTHETIC = Message('Synthetic', train_rows=0, eval_rows=50000, seed=0,
                    task_correlation=Optional(TASK_CORRELATION))

# not in EasyRec: the device mesh and the layout of arrays on it (training/sharding.py).
# Each logical axis names the mesh axes it is split over; () = replicated. The default
# mesh puts every device on 'data' (model = 1): batches are split over all devices
# (data parallelism) and so are embedding tables by rows ('vocab' -> data and model), the
# memory that grows with the vocabulary. A 'model' axis > 1 adds expert parallelism.
SHARDING = Message(
    'Sharding',
    mesh_axes=Repeated(str, default=('data', 'model')),  # mesh axis names
    mesh_shape=Repeated(int, default=(-1, 1)),  # sizes; one -1 = the devices left over
    vocab=Repeated(str, default=('data', 'model')),  # embedding table rows
    embed=Repeated(str),  # embedding columns and dense-kernel inputs
    expert=Repeated(str, default=('model',)),  # the leading [E] axis of stacked experts
    mlp=Repeated(str),  # hidden units: dense-kernel outputs, biases, batch norm
    attention=Repeated(str),  # the outputs of AITM's query/key/value projections (no L2)
    batch=Repeated(str, default=('data',)),  # the rows of a batch
    replica=Repeated(str),  # the leading axis of a vmapped sweep's replicas
    pad_vocab=True,  # pad tables with zero rows to a multiple of their shards; false: error
)

# easy_rec/python/protos/pipeline.proto
PIPELINE = Message(
    'EasyRecConfig',
    train_input_path='',
    eval_input_path='',
    model_dir='experiments/mmoe',
    train_config=TRAIN_CONFIG,
    eval_config=EVAL_CONFIG,
    data_config=DATA_CONFIG,
    export_config=EXPORT_CONFIG,
    feature_configs=Repeated(FEATURE_CONFIG),
    model_config=MODEL_CONFIG,
    seed=0,  # not in EasyRec: parameter init, dropout and data order
    synthetic=SYNTHETIC,
    sharding=SHARDING,  # not in EasyRec
)
