r"""Trains the runs of a sweep, vmapped: one results row per run, and a summary per setting.

  python scripts/sweep.py --config=configs/task_correlation.py         # the file's sweep()
  python scripts/sweep.py --config=configs/task_correlation.py:tiny    # its :tiny sweep
  python scripts/sweep.py --config=configs/mmoe.py:tiny --seeds=8      # 8 seeds of one config
  python scripts/sweep.py --config=configs/mmoe.py:tiny --seeds=8 --config.data_config.batch_size=32

A config file declares a sweep as big_vision does:

  def sweep(add, arg=None):
    for lr in (1e-3, 1e-2):
      for seed in range(10):
        add('model=mmoe', seed=seed, **{'train_config...learning_rate': lr})

`add(arg, **overrides)`: get_config(arg) with the overrides (dotted config paths). Runs that
differ only in their seeds or learning rate train together as replicas of one vmapped step
(mmoe_jax/training/sweep.py). `--config.x=y` overrides apply to every run. Everything goes
to --workdir (default experiments/sweeps/<config name>[_<arg>], commas as _), whatever
model_dir says: results.jsonl (a row per run), summary.json (per setting; diverged runs
counted apart), the generated data (data/) and caches (cache/), and one directory per group,
named by a hash of its config. The summary table goes to stdout, then the config file's
`report(summary)` (its own tables, e.g. configs/mtl_zoo.py's) where it has one. Rerunning the same command
resumes; a changed config trains its groups anew.
"""

import os

from absl import flags
from ml_collections import config_flags

from mmoe_jax import cli
from mmoe_jax.training import sweep

SEEDS = flags.DEFINE_integer('seeds', 0, 'Train this many seeds (0..N-1) of --config as '
                             'replicas, instead of the config file\'s sweep().')
WORKDIR = flags.DEFINE_string('workdir', None, 'Where everything the sweep writes goes: results, '
                              'checkpoints, generated data, caches (default: '
                              'experiments/sweeps/<config file name>[_<arg>], commas as _).')
MAX_REPLICAS = flags.DEFINE_integer('max_replicas', 0, 'Split larger groups into groups of at '
                                    'most this many replicas (device memory); 0 = no limit.')


def main():
  path, _, arg = config_flags.get_config_filename(flags.FLAGS['config']).partition(':')
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  module, runs = sweep.load_runs(path, arg or None, seeds=SEEDS.value)
  # Commas as '_': the generated data's paths under the workdir are read as comma-separated.
  name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg.replace(',', '_')}" if arg else '')
  workdir = WORKDIR.value or os.path.join('experiments', 'sweeps', name)
  summary = sweep.run_sweep(module, runs, workdir, overrides, MAX_REPLICAS.value)
  print(sweep.format_table(summary), flush=True)
  if hasattr(module, 'report'):  # the config file's own tables of the summary
    print('\n' + module.report(summary), flush=True)


if __name__ == '__main__':
  cli.run(main)
