r"""The training-signals study: how the cvr task is trained, and how MMoE weighs its losses.

On the embedded synthetic taobao data (configs/mmoe.py's data and features, with its Adam
schedule and batch of 1024), 5 seeds of each variant (`variant`), each one group of
vmapped replicas sharing the data:

  fixed        MMoE, both towers' losses on every impression, Fixed weights (the default):
               the cvr tower learns P(buy) over impressions
  click_space  MMoE, the cvr tower's loss on clicked rows only (task_space_indicator_label
               "clk", out_task_space_weight 0): it learns P(buy | click)
  esmm         EasyRec's ESMM: pCTCVR = pCTR x pCVR, both losses on every impression
  uncertainty  MMoE, loss_weight_strategy Uncertainty, learn_loss_weight on each tower's
               one CLASSIFICATION loss
  pareto       MMoE, use_pareto_loss_weight (TorchEasyRec's min-norm loss weights)

Every tower reports auc and gauc grouped by user_id; evaluation adds oracle_auc_<t>, the
AUC of the data's true probabilities on the same labels (ESMM: oracle_auc_ctcvr and
oracle_auc_cvr_masked, mmoe_jax/training/evaluation.py). `report(summary)` gives the table
of docs/training_signals.md, "Reference experiment".

Sizes, so that the study runs in about 10 minutes on 2 CPU cores (the same as the model-zoo
study's taobao part): 8-dim embeddings of configs/mmoe.py's 17 features, tables cut to
TABLE_ROWS rows; MMoE 4 experts (64, 32), towers (32,); ESMM user, item and combo DNNs
(64, 32), towers (32,); NUM_STEPS steps of 1024, one pass over the training rows.

  python scripts/sweep.py --config=configs/signals_study.py           # the study
  python scripts/sweep.py --config=configs/signals_study.py:tiny      # seconds, 2 seeds,
                                                                      #   3 features
  python scripts/train.py --config=configs/signals_study.py:variant=pareto
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg, variant_dir

HERE = os.path.dirname(os.path.abspath(__file__))
mmoe = import_config(os.path.join(HERE, 'mmoe.py'))
esmm = import_config(os.path.join(HERE, 'esmm.py'))

VARIANTS = ('fixed', 'click_space', 'esmm', 'uncertainty', 'pareto')
TABLE_ROWS = 20000  # the taobao world has 5,000 users and 8,000 ads
EMBEDDING_DIM = 8
NUM_STEPS = 400
SEEDS = 5
METRICS = (dict(auc={}), dict(gauc=dict(uid_field='user_id')))
# `tiny` models read these (ESMM: user_id, adgroup_id, pid as its three groups), so that
# tests compile small models.
TINY_FEATURES = ('user_id', 'adgroup_id', 'pid')

ARGS = dict(variant='fixed', tiny=False, seeds=0)


def tower(name, label, units, learn=False, **fields):
  """configs/mmoe.py's tower with auc and gauc; `learn`: one CLASSIFICATION loss whose
  weight is learnt (Uncertainty)."""
  out = dict(mmoe.task_tower(name, label, units), metrics_set=METRICS, **fields)
  if learn:
    out['losses'] = (dict(loss_type='CLASSIFICATION', learn_loss_weight=True),)
  return out


def model_config(variant, tiny):
  units = dict(expert=(16, 8), tower=(8,)) if tiny else dict(expert=(64, 32), tower=(32,))
  if variant == 'esmm':
    config = esmm.model_config(dict.fromkeys(esmm.GROUPS, units['expert']), units['tower'])
    config['esmm'].update(cvr_tower=tower('cvr', 'buy', units['tower']),
                          ctr_tower=tower('ctr', 'clk', units['tower']))
    if tiny:
      for group, feature in zip(config['feature_groups'], TINY_FEATURES):
        group['feature_names'] = (feature,)
    return config
  if variant not in VARIANTS:
    raise ValueError(f"config arg variant: {variant!r} is not one of {', '.join(VARIANTS)}")
  learn = variant == 'uncertainty'
  space = dict(task_space_indicator_label='clk', out_task_space_weight=0.0) if (
      variant == 'click_space') else {}
  config = dict(
      model_class='MMoE',
      feature_groups=(dict(group_name='all', wide_deep='DEEP',
                           feature_names=TINY_FEATURES if tiny else mmoe.GROUP_ALL),),
      mmoe=dict(expert_dnn=mmoe.dnn(units['expert']), num_expert=3 if tiny else 4,
                task_towers=(tower('ctr', 'clk', units['tower'], learn),
                             tower('cvr', 'buy', units['tower'], learn, **space)),
                l2_regularization=1e-6),
      embedding_regularization=5e-5)
  if learn:
    config['loss_weight_strategy'] = 'Uncertainty'
  config['use_pareto_loss_weight'] = variant == 'pareto'
  return config


def get_config(arg=None):
  """One run of the study: `variant` on configs/mmoe.py's data (its :tiny with `tiny`)."""
  arg = parse_arg(arg, **ARGS)
  config = mmoe.get_config('tiny' if arg.tiny else None).to_dict()
  config['model_dir'] = variant_dir('experiments/signals_study', arg, ARGS, named=('seeds',))
  config['feature_configs'] = [
      dict(f, embedding_dim=EMBEDDING_DIM, **({'hash_bucket_size': min(
          f['hash_bucket_size'], TABLE_ROWS)} if f.get('hash_bucket_size') else {}))
      for f in mmoe.feature_configs()]
  if not arg.tiny:  # one pass over the training rows
    config['train_config'].update(num_steps=NUM_STEPS, save_checkpoints_steps=NUM_STEPS,
                                  log_step_count_steps=NUM_STEPS // 4)
    config['synthetic'].update(train_rows=NUM_STEPS * 1024, eval_rows=100_000)
  config['model_config'] = model_config(arg.variant, arg.tiny)
  return complete(config)


def sweep(add, arg=None):
  """`seeds` seeds (default 5; `:tiny` 2) of every variant, each one group of replicas."""
  arg = parse_arg(arg, **ARGS)
  for variant in VARIANTS:
    for seed in range(arg.seeds or (2 if arg.tiny else SEEDS)):
      add(f'variant={variant}' + (',tiny' if arg.tiny else ''), seed=seed)


# ---- the study's table (the summary's entries, one per variant).

NAMES = dict(fixed='MMoE, Fixed (cvr on every impression)',
             click_space='MMoE, cvr on clicked rows (task space)', esmm='ESMM',
             uncertainty='MMoE, Uncertainty', pareto='MMoE, Pareto')
# (task column, target measured, auc key, gauc key, oracle key) per variant.
ROWS = dict(
    mmoe=(('ctr', 'clk, every impression', 'auc_ctr', 'gauc_ctr', 'oracle_auc_ctr'),
          ('cvr', 'buy, every impression', 'auc_cvr', 'gauc_cvr', 'oracle_auc_cvr')),
    esmm=(('ctr', 'clk, every impression', 'auc_ctr', 'gauc_ctr', 'oracle_auc_ctr'),
          ('ctcvr = ctr x cvr', 'buy, every impression', 'auc_ctcvr', 'gauc_ctcvr',
           'oracle_auc_ctcvr'),
          ('cvr', 'buy, clicked rows', 'auc_cvr_masked', 'gauc_cvr_masked',
           'oracle_auc_cvr_masked')))


def _cell(stats):
  return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if stats else ''


def report(summary):
  """Markdown: per variant and task, mean ± std over the seeds of AUC, GAUC (by user_id)
  and the oracle gap (oracle AUC - AUC). The replicas share the eval data, so the oracle
  AUC is one number and the gap's std is the AUC's."""
  lines = ['| variant | seeds | task | target (label, rows) | AUC | GAUC | oracle AUC '
           '| oracle gap |', '|---|---|---|---|---|---|---|---|']
  for entry in summary:
    variant = parse_arg(entry['run'], **ARGS).variant
    metrics = entry['metrics']
    for task, target, auc, gauc, oracle in ROWS['esmm' if variant == 'esmm' else 'mmoe']:
      gap = None
      if auc in metrics and oracle in metrics:
        gap = dict(mean=metrics[oracle]['mean'] - metrics[auc]['mean'], std=metrics[auc]['std'])
      oracle_auc = f"{metrics[oracle]['mean']:.4f}" if oracle in metrics else ''
      lines.append(f"| {NAMES[variant]} | {entry['n'] - entry['nonfinite']} | {task} | {target} "
                   f"| {_cell(metrics.get(auc))} | {_cell(metrics.get(gauc))} | {oracle_auc} "
                   f"| {_cell(gap)} |")
  return '\n'.join(lines)
