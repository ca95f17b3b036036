"""Building and emulating the infrastructure: the model, the SAM template, the local stack, the CLI."""
