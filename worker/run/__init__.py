"""One run of the worker: which songs still need generating, the batches they share, how each
finished song is delivered, resumed or retried, and the exit code that sums the run up."""
