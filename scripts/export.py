r"""Exports a checkpoint for serving: its prediction function (jax.export, StableHLO, any
batch size), its parameters and a manifest of the feature transforms and outputs.

  python scripts/export.py --config=configs/mmoe.py --output_dir=export_dir
  python scripts/export.py --config=configs/mmoe.py --output_dir=DIR --platforms=cpu,cuda
  python scripts/export.py --config=configs/mmoe.py --output_dir=DIR \
      --checkpoint_path=experiments/mmoe_taobao/best_ckpt

mmoe_jax/serving.py serves the result with jax, numpy and pyarrow alone:
serving.load(DIR).predict_csv('rows.csv'). The checkpoint is model_dir's latest unless
--checkpoint_path names another; the model is built from the config model_dir records,
unless --use_given_config (as evaluate.py). Layout and manifest: docs/serving.md.
"""

import json
import logging

from absl import flags

from mmoe_jax import cli
from mmoe_jax.training import exporter

OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Directory to write the artifact to '
                                 '(replaced if it exists).')
CHECKPOINT_PATH = flags.DEFINE_string(
    'checkpoint_path', None, "Checkpoint to export (default: model_dir's latest): a model_dir, "
    'its checkpoints/ or best_ckpt/, or one step directory.')
PLATFORMS = flags.DEFINE_list('platforms', ['cpu'], 'Platforms to export for: cpu, and cuda '
                              'or tpu as well (cpu is always included).')
USE_GIVEN_CONFIG = cli.define_use_given_config_flag()


def main():
  platforms = ['cpu'] + [p for p in PLATFORMS.value if p != 'cpu']
  manifest = exporter.export_checkpoint(cli.CONFIG.value, OUTPUT_DIR.value,
                                        CHECKPOINT_PATH.value, platforms, USE_GIVEN_CONFIG.value)
  logging.getLogger('mmoe_jax').info('exported step %d to %s', manifest['step'],
                                     OUTPUT_DIR.value)
  print(json.dumps(dict(output_dir=OUTPUT_DIR.value, step=manifest['step'],
                        platforms=manifest['platforms'],
                        bytes=exporter.artifact_size(OUTPUT_DIR.value))), flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['output_dir'])
  cli.run(main)
