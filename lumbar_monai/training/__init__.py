"""Training entry points of the two stages (MONAI Ignite engines)."""
