"""The checkout saga: step definitions, retry policy and the runner that drives them."""
