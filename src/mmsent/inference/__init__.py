"""Using a trained model dir: evaluation on a labelled split."""
