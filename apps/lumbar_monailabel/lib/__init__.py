"""The lumbar landmark MONAI Label app's tasks (MONAI Label's app layout: configs, infers, trainers)."""
