"""Experiments: one run (its settings, cache key and cost columns), grids of runs (here, in worker processes or as
submitit jobs on SLURM), the paper's tables and claims, and the results cache."""
