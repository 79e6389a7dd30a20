"""SageMaker: package the training script, launch jobs, run the container contract locally, pull results."""
