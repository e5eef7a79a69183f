r"""The model-zoo study: every multi-task model of the project, 5 seeds each, vmapped.

Three parts (a config arg names one bare: `:census,model=ple,group=2`; default taobao),
each model sized like MMoE of the same width (the rule for each part below):
  taobao       the embedded synthetic taobao click/buy data (mmoe_jax/data/synthetic.py):
               AUC and oracle gap (oracle_auc - auc: what the true probabilities reach on
               the same labels, minus the model's) per task
  census       Census-Income (KDD) task groups 1 and 2 (`group`; configs/census.py, data
               from `manual_dir`): AUC per task on the test split
  correlation  the MMoE paper's task-correlation study (configs/task_correlation.py), with
               PLE added: test MSE per task at correlations `p` 0.5, 0.8, 0.9, 1.0

Models (`model`):
  single_task        the shared-bottom network with one tower (`task`), one run per task
  simple_multi_task  EasyRec's SimpleMultiTask: one tower per task, sharing the embeddings
  shared_bottom      one MLP below both towers
  omoe               the MMoE layer with one gate shared by the tasks
  mmoe               EasyRec's built-in MMoE
  ple                EasyRec's PLE: per extraction network, 1 expert per task and 2 shared
                     (taobao) or 3 per task and 2 shared (census, correlation), so each
                     level has MMoE's expert count; one level per MMoE expert layer
  dbmtl              EasyRec's DBMTL: a bottom MLP, towers, and the second task's tower
                     reading the first's relation output
  esmm               EasyRec's ESMM (taobao only): pCTCVR = pCTR x pCVR
  aitm               EasyRec's AITM (configs/aitm.py; taobao only): a shared bottom, ctr and
                     cvr tower MLPs, the cvr one attending to the ctr one's transfer

Where a model does not apply: ESMM (and AITM) model a task that is a sub-space of another,
buy only after a click; only taobao has that. Census' tasks (income and marital status,
education and marital status) are not nested, and the correlation study's are two
regressions. Single-Task is not run on the correlation study (the paper has none there).

Training, sized so that the study runs on a 2-core CPU shared with other jobs: taobao,
configs/mmoe.py's Adam schedule for one pass over 256,000 rows in batches of 512 (500 steps;
`:long`: 1,024,000 rows in batches of 1024, 1000 steps); census, configs/census.py's but
1000 steps (`:long`: its 3000); correlation, configs/task_correlation.py's (3000 steps).

Widths. taobao: 8-dim embeddings of configs/mmoe.py's 17 features (136 inputs), tables cut
to TABLE_ROWS rows; MMoE/OMoE 4 experts (64, 32), towers (32,); Shared-Bottom (256, 32),
exactly the experts' weights in one MLP; SimpleMultiTask towers (128, 32, 32); PLE levels
(64,) then (32,); DBMTL bottom (256,), towers (32, 32), relation (16,); ESMM user, item
and combo DNNs (64, 32), towers (32,); AITM bottom (256,), tower MLPs and transfer (32,),
task towers (32,). census: configs/census.py's models (8 experts of 16,
towers of 8, Shared-Bottom by the paper's parameter rule); SimpleMultiTask towers (64, 8),
PLE one level of 16-unit experts, DBMTL census' bottom, relation (8,). correlation:
configs/task_correlation.py's models; PLE one level of 16-unit experts. Every model has
the same regularization as MMoE on its part.

  python scripts/sweep.py --config=configs/mtl_zoo.py              # the study, all parts
  python scripts/sweep.py --config=configs/mtl_zoo.py:taobao       # one part (or census,
                                                                   #   correlation)
  python scripts/sweep.py --config=configs/mtl_zoo.py:tiny         # seconds, 2 seeds
  python scripts/sweep.py --config=configs/mtl_zoo.py:long         # taobao, census longer
  python scripts/sweep.py --config=configs/mtl_zoo.py:seeds=10     # more seeds
  python scripts/train.py --config=configs/mtl_zoo.py:census,model=ple,group=2
  python scripts/benchmark.py --config=configs/mtl_zoo.py:model=ple --flops

`report(summary)` (printed by scripts/sweep.py after its table) gives the per-part tables
of docs/sweeps.md: mean ± std over the seeds, per model and task.
"""

import os

from mmoe_jax.config import complete, import_config, parse_arg, variant_dir

HERE = os.path.dirname(os.path.abspath(__file__))
mmoe = import_config(os.path.join(HERE, 'mmoe.py'))
census = import_config(os.path.join(HERE, 'census.py'))
correlation_study = import_config(os.path.join(HERE, 'task_correlation.py'))
ple = import_config(os.path.join(HERE, 'ple.py'))
esmm = import_config(os.path.join(HERE, 'esmm.py'))
dbmtl = import_config(os.path.join(HERE, 'dbmtl.py'))
backbone = import_config(os.path.join(HERE, 'mmoe_backbone.py'))
aitm = import_config(os.path.join(HERE, 'aitm.py'))

# In the order they train (and are reported): EasyRec's benchmark models first.
TAOBAO = ('mmoe', 'ple', 'esmm', 'aitm', 'simple_multi_task', 'dbmtl', 'omoe',
          'shared_bottom', 'single_task')
CENSUS = ('mmoe', 'ple', 'simple_multi_task', 'dbmtl', 'omoe', 'shared_bottom', 'single_task')
CORRELATION = ('shared_bottom', 'omoe', 'mmoe', 'ple')
PARTS = dict(taobao=TAOBAO, census=CENSUS, correlation=CORRELATION)
TAOBAO_TASKS = ('ctr', 'cvr')
TABLE_ROWS = 20000  # the taobao world has 5,000 users and 8,000 ads
SEEDS = 5
EMBEDDING_DIM = 8


# ---- taobao: configs/mmoe.py's data and training, the zoo's widths.

def _plain_mlp(units):
  return dict(hidden_units=tuple(units), use_bn=False, use_final_bn=False, use_bias=True,
              use_final_bias=True)


def _taobao_towers(units, tasks=TAOBAO_TASKS):
  labels = dict(ctr='clk', cvr='buy')
  return tuple(mmoe.task_tower(t, labels[t], units) for t in tasks)


def _taobao_backbone(layer, towers):
  return dict(
      model_class='MultiTaskModel',
      feature_groups=(dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
      backbone=dict(blocks=(
          backbone.block('all', [dict(feature_group_name='all')], input_layer={}),
          backbone.block('bottom', ['all'], keras_layer=layer))),
      model_params=dict(task_towers=towers, l2_regularization=1e-6))


def taobao_model(model, task, tiny):
  """The model on the taobao schema; `tiny`: every width cut to a few units."""
  w = (lambda *units: tuple(max(u // 16, 2) for u in units)) if tiny else (lambda *u: u)
  tower = w(32)
  if model in ('single_task', 'shared_bottom'):
    tasks = (task or 'ctr',) if model == 'single_task' else TAOBAO_TASKS
    config = _taobao_backbone(dict(class_name='MLP', mlp=_plain_mlp(w(256, 32))),
                              _taobao_towers(tower, tasks))
  elif model == 'omoe':
    config = _taobao_backbone(dict(class_name='MMoE', mmoe=dict(
        num_task=2, num_expert=4, shared_gate=True, expert_mlp=_plain_mlp(w(64, 32)))),
        _taobao_towers(tower))
  elif model == 'mmoe':
    config = dict(model_class='MMoE', feature_groups=(
        dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
        mmoe=dict(expert_dnn=mmoe.dnn(w(64, 32)), num_expert=4, task_towers=_taobao_towers(tower),
                  l2_regularization=1e-6))
  elif model == 'simple_multi_task':
    config = dict(model_class='SimpleMultiTask', feature_groups=(
        dict(group_name='all', feature_names=mmoe.GROUP_ALL, wide_deep='DEEP'),),
        simple_multi_task=dict(task_towers=_taobao_towers(w(128, 32, 32)),
                               l2_regularization=1e-6))
  elif model == 'ple':
    config = ple.model_config((w(64), w(32)), tower, tower, experts=1, shared=2)
  elif model == 'dbmtl':
    config = dbmtl.model_config(w(256), w(32, 32), w(16))
  elif model == 'aitm':
    config = aitm.model_config(w(256), tower, tower)
  elif model == 'esmm':
    config = esmm.model_config(dict(user=w(64, 32), item=w(64, 32), combo=w(64, 32)), tower)
  else:
    raise ValueError(f"config arg model: {model!r} is not one of {', '.join(TAOBAO)} "
                     '(on taobao)')
  config['embedding_regularization'] = 5e-5  # configs/mmoe.py's, for every model
  return config


def taobao_config(arg):
  config = mmoe.get_config('tiny' if arg.tiny else None).to_dict()
  config['feature_configs'] = [
      dict(f, embedding_dim=EMBEDDING_DIM, **({'hash_bucket_size': min(
          f['hash_bucket_size'], TABLE_ROWS)} if f.get('hash_bucket_size') else {}))
      for f in mmoe.feature_configs()]
  if not arg.tiny:  # one pass over the training rows
    steps, batch = (1000, 1024) if arg.long else (500, 512)
    config['train_config'].update(num_steps=steps, save_checkpoints_steps=steps,
                                  log_step_count_steps=steps // 4)
    config['data_config']['batch_size'] = batch
    config['synthetic'].update(train_rows=steps * batch, eval_rows=100_000)
  config['model_config'] = taobao_model(arg.model, arg.task, arg.tiny)
  return config


# ---- census: configs/census.py's models, and the built-ins on its schema.

def _census_towers(tasks, units=(census.TOWER_UNITS,)):
  return tuple(dict(census.task_tower(t), dnn=dict(hidden_units=units, use_bn=False))
               for t in tasks)


def census_model(model, tasks):
  group = (dict(group_name='all', feature_names=census.FEATURES),)
  if model == 'simple_multi_task':
    return dict(model_class='SimpleMultiTask', feature_groups=group, simple_multi_task=dict(
        task_towers=_census_towers(tasks, (64, census.TOWER_UNITS)), l2_regularization=0.0))
  if model == 'ple':
    return dict(model_class='PLE', feature_groups=group, ple=dict(
        extraction_networks=(dict(
            network_name='layer1', expert_num_per_task=3, share_num=2,
            task_expert_net=mmoe.dnn((census.EXPERT_UNITS,)),
            share_expert_net=mmoe.dnn((census.EXPERT_UNITS,))),),
        task_towers=_census_towers(tasks), l2_regularization=0.0))
  if model == 'dbmtl':
    towers = [dict(t, relation_dnn=mmoe.dnn((census.TOWER_UNITS,)))
              for t in _census_towers(tasks)]
    towers[1]['relation_tower_names'] = (tasks[0],)
    return dict(model_class='DBMTL', feature_groups=group, dbmtl=dict(
        bottom_dnn=mmoe.dnn((census.bottom_units(),)), task_towers=tuple(towers),
        l2_regularization=0.0))
  raise ValueError(f"config arg model: {model!r} is not one of {', '.join(CENSUS)} "
                   '(on census)')


def census_config(arg):
  own = arg.model in census.MODELS
  spec = [f'model={arg.model if own else "mmoe"}', f'group={arg.group}',
          f'manual_dir={arg.manual_dir}'] + (['tiny'] if arg.tiny else [])
  if arg.model == 'single_task' and arg.task:
    spec.append(f'task={arg.task}')
  config = census.get_config(','.join(spec)).to_dict()
  if not (arg.tiny or arg.long):  # a third of configs/census.py's 3000 steps (2-core CPU)
    config['train_config'].update(num_steps=1000, save_checkpoints_steps=1000,
                                  log_step_count_steps=250)
  if not own:
    tasks = census.GROUPS[arg.group]
    features = config['model_config']['feature_groups'][0]['feature_names']  # tiny: fewer
    config['model_config'] = census_model(arg.model, tasks)
    config['model_config']['feature_groups'] = (dict(group_name='all',
                                                     feature_names=features),)
  return config


# ---- correlation: configs/task_correlation.py's models, and PLE.

def correlation_config(arg):
  own = arg.model in correlation_study.MODELS
  spec = [f'model={arg.model if own else "mmoe"}', f'correlation={arg.p}',
          f'seed={arg.seed}'] + (['tiny'] if arg.tiny else [])
  config = correlation_study.get_config(','.join(spec)).to_dict()
  if arg.model == 'ple':
    towers = config['model_config']['mmoe']['task_towers']
    config['model_config'] = dict(
        model_class='PLE', feature_groups=config['model_config']['feature_groups'], ple=dict(
            extraction_networks=(dict(
                network_name='layer1', expert_num_per_task=3, share_num=2,
                task_expert_net=dict(hidden_units=(16,), use_bn=False),
                share_expert_net=dict(hidden_units=(16,), use_bn=False)),),
            task_towers=towers))
  elif not own:
    raise ValueError(f"config arg model: {arg.model!r} is not one of {', '.join(CORRELATION)} "
                     '(on correlation)')
  return config


# The part is named bare (`:census,model=ple`); `seeds` is the sweep's (get_config, which
# the --config flag calls with the sweep's arg too, ignores it).
ARGS = dict(taobao=False, census=False, correlation=False, model='mmoe', task='', group=1,
            p=0.5, seed=0, tiny=False, long=False, manual_dir=census.MANUAL_DIR, seeds=0)
BUILDERS = dict(taobao=taobao_config, census=census_config, correlation=correlation_config)


def named_parts(arg):
  return [p for p in PARTS if getattr(arg, p)]


def get_config(arg=None):
  """One run of the study: the part named (default taobao), `model` on it."""
  arg = parse_arg(arg, **ARGS)
  parts = named_parts(arg) or ['taobao']
  if len(parts) > 1:
    raise ValueError(f"config arg: one part at a time, not {', '.join(parts)} (the sweep "
                     'runs one part, or all three when none is named)')
  if arg.long and parts == ['correlation']:
    raise ValueError('config arg long: the correlation part has no longer setting')
  config = BUILDERS[parts[0]](arg)
  config['model_dir'] = variant_dir(f'experiments/mtl_zoo/{parts[0]}_{arg.model}', arg, ARGS,
                                    named=(*PARTS, 'model', 'manual_dir', 'seeds'))
  config['model_config']['model_name'] = arg.model
  return complete(config)


def runs(part, tiny=False):
  """(arg, extra_arg) of every run of a part: one per model, task (single_task), group
  (census) or correlation."""
  out = []
  for model in PARTS[part]:
    if part == 'taobao':
      tasks = TAOBAO_TASKS if model == 'single_task' else ('',)
      out += [f'taobao,model={model}' + (f',task={t}' if t else '') for t in tasks]
    elif part == 'census':
      if model == 'single_task':  # never_married is in both groups: trained once
        out += [f'census,model=single_task,group={g},task={t}' for g, t in
                ((1, 'income_50k'), (1, 'never_married'), (2, 'college'))]
      else:
        out += [f'census,model={model},group={g}' for g in census.GROUPS]
    else:
      correlations = (0.5, 1.0) if tiny else correlation_study.CORRELATIONS
      out += [f'correlation,model={model},p={c}' for c in correlations]
  return out


def sweep(add, arg=None):
  """`seeds` seeds (default 5) of every run of the parts named (taobao, census,
  correlation; none named: all three), each run one group of vmapped replicas. The data is
  shared by a run's replicas except in the correlation study, where seed i draws replica
  i's data as configs/task_correlation.py's study does. `:tiny`: 2 seeds of the tiny
  sizes (census' data from `manual_dir`)."""
  arg = parse_arg(arg, **ARGS)
  seeds = arg.seeds or (2 if arg.tiny else SEEDS)
  parts = named_parts(arg) or list(PARTS)
  for part in parts:
    for run in runs(part, arg.tiny):
      if arg.tiny or arg.long and part != 'correlation':
        run += ',tiny' if arg.tiny else ',long'
      if part == 'census' and arg.manual_dir != census.MANUAL_DIR:
        run += f',manual_dir={arg.manual_dir}'
      for seed in range(seeds):
        extra = {'synthetic.seed': seed} if part == 'correlation' else {}
        if part == 'census':  # as configs/census.py's sweep: the test split's AUC
          extra = {'eval_input_path': 'test'}
        add(run, seed=seed, **extra)


# ---- the study's tables (scripts/sweep.py prints report(summary) after its own table).

NAMES = dict(single_task='Single-Task', simple_multi_task='SimpleMultiTask',
             shared_bottom='Shared-Bottom', omoe='OMoE', mmoe='MMoE', ple='PLE', dbmtl='DBMTL',
             esmm='ESMM', aitm='AITM')


def _cell(entry, metric, minus=None):
  """mean ± std of `metric` in a summary entry; with `minus`, the mean of the metric
  `minus` less it (an oracle gap: the oracle AUC is one number, the replicas share the
  data, so the std is the AUC's)."""
  stats = entry['metrics'].get(metric) if entry else None
  if not stats:
    return ''
  mean = entry['metrics'][minus]['mean'] - stats['mean'] if minus else stats['mean']
  return f"{mean:.4f} ± {stats['std']:.4f}"


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def report(summary):
  """The study's tables, markdown: per part, mean ± std over the seeds per model and task.
  taobao: AUC and oracle gap of ctr (clk) and of buy over every impression (ESMM: its
  pCTCVR); census: test AUC per group and task (Single-Task's never_married, trained
  once, in both groups); correlation: test MSE per task and correlation."""
  runs = {}
  for entry in summary:
    arg = parse_arg(entry['run'], **ARGS)
    part = (named_parts(arg) or ['taobao'])[0]
    runs[part, arg.model, arg.task, arg.group, arg.p] = entry
  out = []
  models = lambda part: [m for m in PARTS[part] if any(k[:2] == (part, m) for k in runs)]
  if models('taobao'):
    rows = []
    for m in models('taobao'):
      get = lambda task: runs.get(('taobao', m, task if m == 'single_task' else '', 1, 0.5))
      buy = ('auc_ctcvr', 'oracle_auc_ctcvr') if m == 'esmm' else ('auc_cvr', 'oracle_auc_cvr')
      n = get('ctr')['n'] if get('ctr') else get('cvr')['n']
      rows.append([NAMES[m], str(n), _cell(get('ctr'), 'auc_ctr'),
                   _cell(get('ctr'), 'auc_ctr', 'oracle_auc_ctr'), _cell(get('cvr'), buy[0]),
                   _cell(get('cvr'), *buy)])
    out += ['taobao (synthetic): test AUC and oracle gap (oracle AUC - AUC)', _table(
        ['model', 'seeds', 'ctr AUC', 'ctr gap', 'buy AUC', 'buy gap'], rows)]
  if models('census'):
    columns = [(g, t) for g, tasks in census.GROUPS.items() for t in tasks]
    rows = []
    for m in models('census'):
      cells = []
      for g, t in columns:
        if m == 'single_task':
          entry = runs.get(('census', m, t, 1, 0.5)) or runs.get(('census', m, t, g, 0.5))
        else:
          entry = runs.get(('census', m, '', g, 0.5))
        cells.append(_cell(entry, f'auc_{t}'))
      rows.append([NAMES[m]] + cells)
    out += ['census: test AUC', _table(['model'] + [f'{t} (group {g})' for g, t in columns],
                                      rows)]
  if models('correlation'):
    ps = sorted({k[4] for k in runs if k[0] == 'correlation'})
    for task in ('task1', 'task2'):
      rows = [[NAMES[m]] + [_cell(runs.get(('correlation', m, '', 1, p)),
                                  f'mean_squared_error_{task}') for p in ps]
              for m in models('correlation')]
      out += [f'correlation: test MSE of {task}',
              _table(['model'] + [f'p = {p}' for p in ps], rows)]
  return '\n\n'.join(out)
