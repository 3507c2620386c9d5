"""The pruning core: which weights or nodes matter (scores, their derivatives), masks, coupled channels and the
physical removal of nodes, pruning schedules at initialisation, and what a network costs (parameters, FLOPs, time,
memory, disk). It knows no dataset and no training loop."""
