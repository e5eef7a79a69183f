r"""Writes predictions for every row of a CSV, from a checkpoint or an exported model.

  python scripts/predict.py --config=configs/mmoe.py --input_path=rows.csv --output_path=out.csv
  python scripts/predict.py --saved_model_dir=export_dir --input_path=rows.csv \
      --output_path=out.csv --reserved_cols=user_id,adgroup_id --output_cols=probs_ctr,probs_cvr

The input needs only the feature columns: with a header (data_config.with_header) they are
found by name, and other columns, labels included, may be there or not; without one, the
columns are data_config.input_fields in order, with or without the label fields.

The output has one row per input row, in input order, with EasyRec's prediction
columns: probs_<tower> (CLASSIFICATION) and y_<tower> (L2_LOSS, or the class of a
multi-class tower, whose class probabilities are probs_<tower>_<k>), or those
--output_cols names (logits_<tower> too), then the --reserved_cols copied from the input
(EasyRec's predictor flags). With --config the latest checkpoint of model_dir (or --checkpoint_path) predicts,
built from the config that model_dir records unless --use_given_config (as evaluate.py);
with --saved_model_dir, the artifact scripts/export.py wrote (no config needed).
"""

from absl import flags

from mmoe_jax import cli, serving
from mmoe_jax.training import evaluation

INPUT_PATH = flags.DEFINE_string('input_path', None, 'CSV to predict (see above).')
OUTPUT_PATH = flags.DEFINE_string('output_path', None, 'Where to write the predictions CSV.')
SAVED_MODEL_DIR = flags.DEFINE_string('saved_model_dir', None, 'An artifact of '
                                      'scripts/export.py to predict with, instead of --config.')
RESERVED_COLS = flags.DEFINE_list('reserved_cols', [], 'Input columns to copy into the output '
                                  '(e.g. ids), after the predictions.')
OUTPUT_COLS = flags.DEFINE_list('output_cols', [], 'Output columns to write, in order '
                                "(default: every probs_ and y_ column); EasyRec's 'name type' "
                                'items are taken by name.')
CHECKPOINT_PATH = flags.DEFINE_string(
    'checkpoint_path', None, "With --config, the checkpoint to predict with (default: model_dir's "
    'latest): a model_dir, its checkpoints/ or best_ckpt/, or one step directory.')
USE_GIVEN_CONFIG = cli.define_use_given_config_flag()


def main():
  if SAVED_MODEL_DIR.value:
    if cli.CONFIG.value is not None:
      raise flags.ValidationError('pass --config or --saved_model_dir, not both')
    predictor = serving.load(SAVED_MODEL_DIR.value)
    table = predictor.inputs.read_csv(INPUT_PATH.value, RESERVED_COLS.value)
    predictions = predictor.predict_table(table, INPUT_PATH.value)
  elif cli.CONFIG.value is None:
    raise flags.ValidationError('pass --config (a checkpoint) or --saved_model_dir')
  else:
    predictions, table = evaluation.predict_checkpoint_table(
        cli.CONFIG.value, INPUT_PATH.value, use_given_config=USE_GIVEN_CONFIG.value,
        keep=RESERVED_COLS.value, checkpoint_path=CHECKPOINT_PATH.value)
  evaluation.write_predictions(predictions, OUTPUT_PATH.value,
                               table.select(RESERVED_COLS.value), OUTPUT_COLS.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['input_path', 'output_path'])
  cli.run(main, config_required=False)
