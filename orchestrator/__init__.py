"""The checkout orchestrator: drives each checkout through the warehouse, rewards and email steps as a saga."""
