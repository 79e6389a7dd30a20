"""Training: the loop, metrics, TensorBoard and SageMaker metric logging, the model dir."""
