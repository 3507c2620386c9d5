"""cropkit's benchmarks: what early structured pruning really saves, measured side by side in one process.

    ./kit bench                 every benchmark at its default size (< 15 min on 2 CPU cores)
    ./kit bench --quick         seconds each, tiny sizes (what tests/test_benchmarks.py runs)
    ./kit bench --only NAME     one of them (repeatable)
    ./kit bench --full          larger batches/repeats at full width, every sparsity in masks_alone
    ./kit bench --threads 1     torch CPU threads (default: one per core); one thread on a shared, busy machine
    ./kit bench --out DIR       where CSV/PNG go (default outputs/benchmarks/)

| module             | measures                                                                        |
|--------------------|---------------------------------------------------------------------------------|
| structured_payoff  | CroP-S pruned ÷ dense: params, FLOPs, step/inference time, memory, disk         |
| masks_alone        | unstructured masks (cropkit's and torch.nn.utils.prune's) ÷ dense: time, memory |
| scoring_cost       | one scoring batch of each criterion ÷ one training step, Hg both ways           |
| synflow_cost       | cropkit's SynFlow (100 rounds) ÷ the Synaptic-Flow authors' algorithm, restated |
| finding_cost       | wall time and epochs of finding the sparse net ÷ dense training, with accuracy  |
| sparse_kernels     | a masked training step with CSR sparse kernels ÷ the kit's masked dense one     |
| vs_torch_pruning   | torch-pruning's MagnitudePruner against cropkit's CroP-S                        |
| detector_overhead  | the EarlyCroP detector's cost per epoch (when present)                          |

Each module has ``main(quick=False)`` returning a pandas DataFrame, prints its ratios with the issue's targets
and PASS/MISS beside them (printed, never asserted: timings are not tests), and writes CSV and PNG files to
``outputs/benchmarks/`` (or ``$CROPKIT_BENCH_OUT``). Results of a real run are in the README's "Performance" section.
"""
