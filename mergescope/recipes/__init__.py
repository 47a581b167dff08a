"""Recipes: the commands' pipelines read top to bottom (sweep, search, study, demo, validate) over the stages."""
