"""Model inputs: resolving parents (directories, hub ids), their compatibility, and memory and disk checks."""
