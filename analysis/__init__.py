"""Pure computations (limits, qualification, outages, reliability) and the worker that runs them."""
