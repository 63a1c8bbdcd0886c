from training_testing import tiny_cfg  # noqa: F401  (fixture)
