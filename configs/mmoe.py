r"""The seed's built-in MMoE on the taobao click/buy schema.

Mirrors EasyRec's samples/model_config/mmoe_on_taobao.config field for field: 17 features
of group `all` with 16-dim embeddings, 4 experts [256,192,128,64], towers ctr/clk and
cvr/buy [256,192,128,64], l2_regularization 1e-6, embedding_regularization 5e-5, Adam
with exponential decay. With train_input_path unset it trains on the embedded
synthetic taobao data (mmoe_jax/data/synthetic.py), written as EasyRec CSV.

  python scripts/train.py --config=configs/mmoe.py            # CPU-sized default
  python scripts/train.py --config=configs/mmoe.py:full       # EasyRec's batch 4096, 5000 steps
  python scripts/train.py --config=configs/mmoe.py:tiny       # seconds; for smoke tests
  python scripts/train.py --config=configs/mmoe.py:table_scale=100,lazy_adam  # 71M table rows,
      # and lazy_adam_optimizer: only the rows a batch looks up are updated
  python scripts/train.py --config=configs/mmoe.py \
      --config.train_input_path=train.csv --config.eval_input_path=test.csv
"""

from mmoe_jax.config import complete, parse_arg, variant_dir

# Column order of the CSV = input_fields order (EasyRec CSVInput).
INPUT_FIELDS = (('clk', 'INT32'), ('buy', 'INT32'), ('pid', 'STRING'),
                ('adgroup_id', 'STRING'), ('cate_id', 'STRING'), ('campaign_id', 'STRING'),
                ('customer', 'STRING'), ('brand', 'STRING'), ('user_id', 'STRING'),
                ('cms_segid', 'STRING'), ('cms_group_id', 'STRING'),
                ('final_gender_code', 'STRING'), ('age_level', 'STRING'),
                ('pvalue_level', 'STRING'), ('shopping_level', 'STRING'),
                ('occupation', 'STRING'), ('new_user_class_level', 'STRING'),
                ('tag_category_list', 'STRING'), ('tag_brand_list', 'STRING'),
                ('price', 'INT32'))

HASH_BUCKETS = dict(pid=10, adgroup_id=100000, cate_id=10000, campaign_id=100000,
                    customer=100000, brand=100000, user_id=100000, cms_segid=100,
                    cms_group_id=100, final_gender_code=10, age_level=10, pvalue_level=10,
                    shopping_level=10, occupation=10, new_user_class_level=10)

# The group `all`: final_gender_code is declared as a feature but, as in EasyRec's
# sample, not used by the model.
GROUP_ALL = ('user_id', 'cms_segid', 'cms_group_id', 'age_level', 'pvalue_level',
             'shopping_level', 'occupation', 'new_user_class_level', 'adgroup_id',
             'cate_id', 'campaign_id', 'customer', 'brand', 'price', 'pid',
             'tag_category_list', 'tag_brand_list')


def feature_configs(embedding_dim=16, table_scale=1):
  features = [dict(input_names=(name,), feature_type='IdFeature', embedding_dim=embedding_dim,
                   hash_bucket_size=size * table_scale) for name, size in HASH_BUCKETS.items()]
  features += [dict(input_names=(name,), feature_type='TagFeature', embedding_dim=embedding_dim,
                    hash_bucket_size=100000 * table_scale, separator='|')
               for name in ('tag_category_list', 'tag_brand_list')]
  features.append(dict(input_names=('price',), feature_type='IdFeature',
                       embedding_dim=embedding_dim, num_buckets=50))
  return tuple(features)


def dnn(hidden_units):
  # EasyRec's DNN defaults to use_bn: true. Off here, on purpose: with trained batch norm
  # the model learned the embedded data more slowly (README, "Batch norm") and each CPU
  # step took 1.6x as long; EasyRec's own built-in MMoE never trains its experts' batch
  # norm either. --config.model_config.mmoe.expert_dnn.use_bn=true turns it on.
  return dict(hidden_units=hidden_units, use_bn=False)


def task_tower(tower_name, label_name, hidden_units):
  return dict(tower_name=tower_name, label_name=label_name, dnn=dnn(hidden_units),
              num_class=1, weight=1.0, loss_type='CLASSIFICATION', metrics_set=(dict(auc={}),))


ARGS = dict(full=False, tiny=False, table_scale=1, lazy_adam=False)


def get_config(arg=None):
  arg = parse_arg(arg, **ARGS)
  hidden = (256, 192, 128, 64)
  config = dict(
      train_input_path='',  # '' = generate the embedded synthetic data under model_dir
      eval_input_path='',
      # one per variant: experiments/mmoe_taobao, ..._full, ..._tiny, ..._table_scale100_lazy_adam
      model_dir=variant_dir('experiments/mmoe_taobao', arg, ARGS),
      train_config=dict(
          log_step_count_steps=100,
          optimizer_config=dict(adam_optimizer=dict(learning_rate=dict(
              exponential_decay_learning_rate=dict(
                  initial_learning_rate=0.001, decay_steps=1000, decay_factor=0.5,
                  min_learning_rate=1e-7)))),
          save_checkpoints_steps=1000,
          keep_checkpoint_max=3,
          num_steps=4000,
      ),
      eval_config=dict(metrics_set=(dict(auc={}),)),
      data_config=dict(
          input_fields=tuple(dict(input_name=n, input_type=t) for n, t in INPUT_FIELDS),
          label_fields=('clk', 'buy'),
          batch_size=1024,
          num_epochs=10000,
          input_type='CSVInput',
      ),
      feature_configs=feature_configs(table_scale=arg.table_scale),
      model_config=dict(
          model_class='MMoE',
          feature_groups=(dict(group_name='all', feature_names=GROUP_ALL, wide_deep='DEEP'),),
          mmoe=dict(
              expert_dnn=dnn(hidden),
              num_expert=4,
              task_towers=(task_tower('ctr', 'clk', hidden), task_tower('cvr', 'buy', hidden)),
              l2_regularization=1e-6,
          ),
          embedding_regularization=5e-5,
      ),
      synthetic=dict(train_rows=3000000, eval_rows=100000, seed=0),
  )
  if arg.full:  # EasyRec's sample settings, for accelerators
    config['train_config'].update(num_steps=5000, save_checkpoints_steps=1000)
    config['data_config']['batch_size'] = 4096
    config['synthetic'].update(train_rows=2000000, eval_rows=200000)
  if arg.tiny:  # a few seconds on a CPU: smoke tests and CI
    config['train_config'].update(num_steps=20, save_checkpoints_steps=10,
                                  log_step_count_steps=5)
    config['data_config'].update(batch_size=64, eval_batch_size=256)
    config['model_config']['mmoe'].update(
        expert_dnn=dnn((16, 8)), num_expert=3,
        task_towers=(task_tower('ctr', 'clk', (8,)), task_tower('cvr', 'buy', (8,))))
    config['synthetic'].update(train_rows=2000, eval_rows=500)
  if arg.lazy_adam:  # the same Adam, lazy on the embedding tables
    optimizer = config['train_config']['optimizer_config']
    optimizer['lazy_adam_optimizer'] = optimizer.pop('adam_optimizer')
  return complete(config)


def base_config(arg, name, args):
  """This file's data, features and training (its :full / :tiny as `arg` says) as a dict,
  for a config of another model on them; model_dir experiments/<name>[_<variant>]."""
  config = get_config(','.join(k for k in ('full', 'tiny') if getattr(arg, k))).to_dict()
  config['model_dir'] = variant_dir(f'experiments/{name}', arg, args)
  return config
