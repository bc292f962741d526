"""One module per task family; the registry (talr.evaluation.registry.TASKS) names each task's class."""
