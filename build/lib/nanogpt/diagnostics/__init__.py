"""The diagnostics lens: what each layer's activations, gradients and updates look like as a
network trains (makemore part 3's plots, for every stage of the course).

Five files, each importing only those above it:

    stats.py     the numbers of one step: histograms, layer, weight and update statistics
    record.py    a run's numbers (History), saved to and loaded from one .npz file
    health.py    the checks on those numbers, and the health report
    plots.py     pictures of them, each printing the numbers it draws
    monitor.py   the Monitor (the engine's --diag) and snapshot (a notebook's one step)

Names are imported from the file that defines them: `from nanogpt.diagnostics.monitor import
snapshot`. The models never import the lens; the lens reads them.
"""
