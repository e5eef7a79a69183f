r"""The MMoE paper's synthetic study (section 3.2 and 5): two regression tasks of a given
correlation, learned by Shared-Bottom, OMoE and MMoE at the paper's sizes.

Data: mmoe_jax/data/task_correlation.py (x in R^100, labels y1, y2; its docstring gives the
choices the paper leaves open). Models, as the paper sizes them: MMoE and OMoE have 8 experts
of one 16-unit layer (OMoE: one gate shared by both tasks); Shared-Bottom has one 113-unit
layer, about the experts' parameter count (100 x 16 x 8 = 12,800 vs 100 x 113 = 11,300, plus
the towers' extra inputs); every tower is one 8-unit layer and a linear output, trained with
L2_LOSS (mean squared error). Adam; no batch norm, no regularization.

  python scripts/train.py --config=configs/task_correlation.py:model=omoe,correlation=0.8
  python scripts/sweep.py --config=configs/task_correlation.py        # the study (sweep below)
  python scripts/sweep.py --config=configs/task_correlation.py:tiny   # seconds
"""

from mmoe_jax.config import complete, parse_arg, variant_dir

MODELS = ('shared_bottom', 'omoe', 'mmoe')
CORRELATIONS = (0.5, 0.8, 0.9, 1.0)
PLAIN = dict(use_bn=False, use_final_bn=False, use_bias=True, use_final_bias=True)


def task_tower(name, label, units):
  return dict(tower_name=name, label_name=label, dnn=dict(hidden_units=(units,), use_bn=False),
              loss_type='L2_LOSS', metrics_set=(dict(mean_squared_error={}),))


def model_config(model, input_dim, experts=8, expert_units=16, bottom_units=113, tower_units=8):
  group = dict(group_name='all', feature_names=('x',), wide_deep='DEEP')
  towers = (task_tower('task1', 'y1', tower_units), task_tower('task2', 'y2', tower_units))
  if model == 'mmoe':  # EasyRec's built-in MMoE
    return dict(model_class='MMoE', feature_groups=(group,), mmoe=dict(
        expert_dnn=dict(hidden_units=(expert_units,), use_bn=False), num_expert=experts,
        task_towers=towers))
  if model == 'omoe':  # the MMoE layer with one gate for both tasks
    layer = dict(class_name='MMoE', mmoe=dict(
        num_task=2, num_expert=experts, shared_gate=True,
        expert_mlp=dict(hidden_units=(expert_units,), **PLAIN)))
  elif model == 'shared_bottom':
    layer = dict(class_name='MLP', mlp=dict(hidden_units=(bottom_units,), **PLAIN))
  else:
    raise ValueError(f'model={model!r}: one of {", ".join(MODELS)}')
  return dict(model_class='MultiTaskModel', feature_groups=(group,), backbone=dict(blocks=(
      dict(name='all', inputs=(dict(feature_group_name='all'),), input_layer={}),
      dict(name=model, inputs=(dict(block_name='all'),), keras_layer=layer))),
      model_params=dict(task_towers=towers))


ARGS = dict(model='mmoe', correlation=0.5, tiny=False, seed=0)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  input_dim = 100
  config = dict(
      model_dir=variant_dir(f'experiments/task_correlation/{arg.model}_{arg.correlation}', arg,
                            ARGS, named=('model', 'correlation')),
      seed=arg.seed,
      train_config=dict(
          optimizer_config=dict(adam_optimizer=dict(learning_rate=dict(
              constant_learning_rate=dict(learning_rate=0.001)))),
          num_steps=3000, log_step_count_steps=500, save_checkpoints_steps=1500,
          keep_checkpoint_max=1),
      data_config=dict(
          input_fields=(dict(input_name='x', input_type='STRING'),
                        dict(input_name='y1', input_type='FLOAT'),
                        dict(input_name='y2', input_type='FLOAT')),
          label_fields=('y1', 'y2'), batch_size=128, num_epochs=0, eval_batch_size=10000),
      feature_configs=(dict(input_names=('x',), feature_type='RawFeature',
                            raw_input_dim=input_dim, separator='|'),),
      model_config=model_config(arg.model, input_dim),
      synthetic=dict(train_rows=50000, eval_rows=10000, seed=arg.seed,
                     task_correlation=dict(correlation=arg.correlation, input_dim=input_dim)),
  )
  if arg.tiny:
    config['train_config'].update(num_steps=20, log_step_count_steps=10,
                                  save_checkpoints_steps=10)
    config['synthetic'].update(train_rows=512, eval_rows=256)
    config['data_config']['batch_size'] = 32
  return complete(config)


def sweep(add, arg=None):
  """The study: every model x correlation, 100 seeds each (data and init both seeded), so
  each (model, correlation) is one group of 100 vmapped replicas. `:tiny`: 4 seeds of the
  tiny config at correlations 0.5 and 1.0; `:seeds=N`: N seeds."""
  arg = parse_arg(arg, tiny=False, seeds=0)
  seeds = arg.seeds or (4 if arg.tiny else 100)
  for correlation in (0.5, 1.0) if arg.tiny else CORRELATIONS:
    for model in MODELS:
      for seed in range(seeds):
        add(f'model={model},correlation={correlation}' + (',tiny' if arg.tiny else ''),
            seed=seed, **{'synthetic.seed': seed})
