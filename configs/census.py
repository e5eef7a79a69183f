r"""UCI Census-Income (KDD): the MMoE paper's public benchmark (Ma et al., KDD 2018, 6.3).

Data: the tfds builder mmoe_jax/data/census.py, prepared from the UCI files in
`manual_dir` (default: ../shared/data/census_income_kdd beside this repository). With only
census-income.test there, that file is split 60/20/20 (seed 0) into train/validation/test;
with census-income.data too, the paper's split. Training evaluates on `validation`;
scripts/evaluate.py --input_path=test gives the test AUCs.

Tasks (`group`): 1 = income_50k + never_married, 2 = college + never_married. The label
sources (income, marital_stat, education) are not input fields, so no feature can read
them. Inputs: the other 38 columns (the instance weight is not stored): categorical
columns as IdFeature (integer-coded ones by num_buckets, the others hashed, see
HASH_BUCKETS), numeric ones as RawFeature bucketized by BOUNDARIES, all 4-dim embeddings.

Models (`model`), at the community census setup (PaddleRec's: 8 experts of 16 units,
towers of 8 units, Adam 1e-3; paper.md 1.4):
  mmoe           the built-in MMoE (model_class 'MMoE')
  omoe           a MultiTaskModel: the MMoE layer with one gate shared by both tasks
  shared_bottom  a MultiTaskModel: one relu layer of bottom_units() units, sized by the
                 paper's rule to the parameters of MMoE's experts and towers
  single_task    shared_bottom's network with the one tower `task` (default: the group's
                 first task)

  python scripts/train.py --config=configs/census.py:model=mmoe,group=1
  python scripts/evaluate.py --config=configs/census.py:model=mmoe,group=1 --input_path=test
  python scripts/train.py --config=configs/census.py:model=single_task,task=never_married
  python scripts/train.py --config=configs/census.py:full   # PaddleRec's batch size 32
  python scripts/train.py --config=configs/census.py:tiny,manual_dir=/tmp/slice  # 8 inputs
"""

import os

from mmoe_jax.config import complete, parse_arg, variant_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANUAL_DIR = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data', 'census_income_kdd'))

GROUPS = {1: ('income_50k', 'never_married'), 2: ('college', 'never_married')}
LABEL_SOURCES = ('income', 'marital_stat', 'education')  # never input fields

# Numeric columns -> bucket boundaries (bucket i holds boundaries[i-1] <= x < boundaries[i]).
# Zero gets its own bucket where most rows are 0 (wages, capital, dividends: 89-98% zeros);
# the non-zero values are cut at round numbers near their deciles in census-income.test.
# Age in 5-year bins; small integer ranges get one bucket per value.
BOUNDARIES = dict(
    age=tuple(range(5, 91, 5)),
    wage_per_hour=(1, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 3000),
    capital_gains=(1, 2000, 3000, 4000, 5000, 7000, 10000, 15000, 20000, 99999),
    capital_losses=(1, 1500, 1700, 1850, 1900, 2000, 2200, 2500, 3000),
    dividends_from_stocks=(1, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 25000),
    num_persons_worked_for_employer=(1, 2, 3, 4, 5, 6),
    weeks_worked_in_year=(1, 10, 20, 30, 40, 48, 52),
)
# Integer-coded categorical columns -> num_buckets (codes are 0..num_buckets-1; year is 94/95).
NUM_BUCKETS = dict(detailed_industry_recode=52, detailed_occupation_recode=47,
                   own_business_or_self_employed=3, veterans_benefits=3, year=96)
# String columns -> hash_bucket_size: the smallest size >= 2x the column's distinct values
# (and >= 10) at which no two of its values in census-income.test share a bucket
# (tests/test_census.py checks this), so hashing loses nothing.
HASH_BUCKETS = dict(
    class_of_worker=26, enroll_in_edu_inst_last_wk=10, major_industry_code=84,
    major_occupation_code=62, race=11, hispanic_origin=27, sex=10, member_of_a_labor_union=10,
    reason_for_unemployment=13, full_or_part_time_employment_stat=20, tax_filer_stat=18,
    region_of_previous_residence=13, state_of_previous_residence=352,
    detailed_household_and_family_stat=239, detailed_household_summary_in_household=25,
    migration_code_change_in_msa=26, migration_code_change_in_reg=19,
    migration_code_move_within_reg=38, live_in_this_house_1_year_ago=10,
    migration_prev_res_in_sunbelt=12, family_members_under_18=14, country_of_birth_father=260,
    country_of_birth_mother=260, country_of_birth_self=260, citizenship=10,
    fill_inc_questionnaire_for_veterans_admin=10)
# The inputs, in UCI column order.
FEATURES = (
    'age', 'class_of_worker', 'detailed_industry_recode', 'detailed_occupation_recode',
    'wage_per_hour', 'enroll_in_edu_inst_last_wk', 'major_industry_code',
    'major_occupation_code', 'race', 'hispanic_origin', 'sex', 'member_of_a_labor_union',
    'reason_for_unemployment', 'full_or_part_time_employment_stat', 'capital_gains',
    'capital_losses', 'dividends_from_stocks', 'tax_filer_stat', 'region_of_previous_residence',
    'state_of_previous_residence', 'detailed_household_and_family_stat',
    'detailed_household_summary_in_household', 'migration_code_change_in_msa',
    'migration_code_change_in_reg', 'migration_code_move_within_reg',
    'live_in_this_house_1_year_ago', 'migration_prev_res_in_sunbelt',
    'num_persons_worked_for_employer', 'family_members_under_18', 'country_of_birth_father',
    'country_of_birth_mother', 'country_of_birth_self', 'citizenship',
    'own_business_or_self_employed', 'fill_inc_questionnaire_for_veterans_admin',
    'veterans_benefits', 'weeks_worked_in_year', 'year')
# `tiny` models read these 8 (of each encoding) so that tests compile small models.
TINY_FEATURES = ('age', 'class_of_worker', 'detailed_industry_recode', 'capital_gains', 'sex',
                 'detailed_household_and_family_stat', 'weeks_worked_in_year', 'year')
EMBEDDING_DIM = 4
NUM_EXPERT, EXPERT_UNITS, TOWER_UNITS = 8, 16, 8
MODELS = ('mmoe', 'omoe', 'shared_bottom', 'single_task')


def feature_configs():
  out = []
  for name in FEATURES:
    fc = dict(input_names=(name,), embedding_dim=EMBEDDING_DIM)
    if name in BOUNDARIES:
      fc.update(feature_type='RawFeature', boundaries=tuple(map(float, BOUNDARIES[name])))
    elif name in NUM_BUCKETS:
      fc.update(feature_type='IdFeature', num_buckets=NUM_BUCKETS[name])
    else:
      fc.update(feature_type='IdFeature', hash_bucket_size=HASH_BUCKETS[name])
    out.append(fc)
  return tuple(out)


def bottom_units(num_task=2):
  """Shared-Bottom's width by the paper's rule for its synthetic data (paper.md 1.3): one
  layer h with D*h + T*h*tower = MMoE's E*D*H + T*H*tower (biases and gates left out)."""
  d = EMBEDDING_DIM * len(FEATURES)
  moe = NUM_EXPERT * d * EXPERT_UNITS + num_task * EXPERT_UNITS * TOWER_UNITS
  return round(moe / (d + num_task * TOWER_UNITS))


def task_tower(label):
  return dict(tower_name=label, label_name=label, loss_type='CLASSIFICATION', num_class=1,
              dnn=dict(hidden_units=(TOWER_UNITS,), use_bn=False),
              metrics_set=(dict(auc={}),))


def _mlp(units):
  # Plain Dense -> relu layers with biases, as the built-in MMoE's experts (no batch norm).
  return dict(hidden_units=(units,), use_bn=False, use_final_bn=False, use_bias=True,
              use_final_bias=True)


def _backbone_model(layer, tasks):
  return dict(
      model_class='MultiTaskModel',
      feature_groups=(dict(group_name='all', feature_names=FEATURES),),
      backbone=dict(blocks=(
          dict(name='all', inputs=(dict(feature_group_name='all'),), input_layer={}),
          dict(name='bottom', inputs=(dict(block_name='all'),), keras_layer=layer),
      )),
      model_params=dict(task_towers=tuple(map(task_tower, tasks)), l2_regularization=0.0),
  )


def model_config(model, tasks):
  if model == 'mmoe':
    return dict(
        model_class='MMoE',
        feature_groups=(dict(group_name='all', feature_names=FEATURES),),
        mmoe=dict(expert_dnn=dict(hidden_units=(EXPERT_UNITS,), use_bn=False),
                  num_expert=NUM_EXPERT, task_towers=tuple(map(task_tower, tasks)),
                  l2_regularization=0.0))
  if model == 'omoe':
    return _backbone_model(dict(class_name='MMoE', mmoe=dict(
        num_task=len(tasks), num_expert=NUM_EXPERT, expert_mlp=_mlp(EXPERT_UNITS),
        shared_gate=True)), tasks)
  # shared_bottom, and single_task: the same network, sized for two tasks, with one tower.
  return _backbone_model(dict(class_name='MLP', mlp=_mlp(bottom_units())), tasks)


ARGS = dict(model='mmoe', group=1, task='', full=False, tiny=False, manual_dir=MANUAL_DIR)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  if arg.model not in MODELS:
    raise ValueError(f"config arg model: {arg.model!r} is not one of {', '.join(MODELS)}")
  if arg.group not in GROUPS:
    raise ValueError(f'config arg group: {arg.group} is not one of 1, 2')
  tasks = GROUPS[arg.group]
  if arg.model == 'single_task':
    tasks = (arg.task or tasks[0],)
    if tasks[0] not in sum(GROUPS.values(), ()):
      raise ValueError(f'config arg task: {arg.task!r} is not one of '
                       f"{', '.join(sorted(set(sum(GROUPS.values(), ()))))}")
    name = f'single_task_{tasks[0]}'
  elif arg.task:
    raise ValueError('config arg task: only model=single_task takes a task')
  else:
    name = f'{arg.model}_group{arg.group}'

  labels = sorted(set(sum(GROUPS.values(), ())))
  input_fields = [dict(input_name=n, input_type='INT32' if n in BOUNDARIES else 'STRING')
                  for n in FEATURES]
  input_fields += [dict(input_name=n, input_type='INT32') for n in labels]
  num_steps = 3000
  config = dict(
      train_input_path='train',  # tfds split names
      eval_input_path='validation',
      # name spells out model, group and task; manual_dir is where the same data lies
      model_dir=variant_dir(f'experiments/census/{name}', arg, ARGS,
                            named=('model', 'group', 'task', 'manual_dir')),
      train_config=dict(
          optimizer_config=dict(adam_optimizer=dict(learning_rate=dict(
              constant_learning_rate=dict(learning_rate=1e-3)))),
          num_steps=num_steps,
          save_checkpoints_steps=1000,
          keep_checkpoint_max=1,
          log_step_count_steps=500,
      ),
      data_config=dict(
          input_type='TFDSInput',
          tfds=dict(name='census_income_kdd', manual_dir=arg.manual_dir),
          # Shared by every census run: the prepared dataset (tfds/) and the feature caches.
          cache_dir='experiments/census/cache',
          input_fields=tuple(input_fields),
          label_fields=tasks,
          batch_size=256,
          eval_batch_size=8192,
          num_epochs=10000,
      ),
      feature_configs=feature_configs(),
      model_config=dict(model_config(arg.model, tasks), model_name=name),
  )
  if arg.full:  # PaddleRec's census batch size (32), over the same number of epochs
    config['train_config'].update(num_steps=num_steps * 256 // 32, save_checkpoints_steps=8000,
                                  log_step_count_steps=4000)
    config['data_config']['batch_size'] = 32
  if arg.tiny:  # a few seconds on a CPU: smoke tests and CI
    config['train_config'].update(num_steps=10, save_checkpoints_steps=10,
                                  log_step_count_steps=5)
    config['data_config'].update(batch_size=64, eval_batch_size=256)
    config['model_config']['feature_groups'] = (dict(group_name='all',
                                                     feature_names=TINY_FEATURES),)
  return complete(config)


def sweep(add, arg=None):
  """Every model on one task group (`group`, default 1), `seeds` seeds each (default 10),
  evaluated on the test split: each model is one group of vmapped replicas (single_task: one
  per task). `:tiny` for a quick check."""
  arg = parse_arg(arg, group=1, seeds=10, tiny=False, manual_dir=MANUAL_DIR)
  common = f'group={arg.group}' + (',tiny' if arg.tiny else '') + (
      f',manual_dir={arg.manual_dir}' if arg.manual_dir != MANUAL_DIR else '')
  runs = [f'model=single_task,task={task}' for task in GROUPS[arg.group]]
  runs += [f'model={model}' for model in ('shared_bottom', 'omoe', 'mmoe')]
  for run in runs:
    for seed in range(arg.seeds):
      add(f'{run},{common}', seed=seed, eval_input_path='test')
