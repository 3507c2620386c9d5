"""Training: the loop and the callbacks that hook into it (the EarlyCroP and EarlyBird detectors, checkpoints,
TensorBoard). The loop knows nothing about pruning."""
