"""What a run learns: the tasks (loss and metric), the datasets (offline stand-ins and loaders for the paper's real
sets) and the model zoo. Above the core (models use its layer conventions), below training."""
