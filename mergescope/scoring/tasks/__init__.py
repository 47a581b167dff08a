"""lm-eval task YAMLs shipped with mergescope, found by name (lmeval.SHIPPED_TASKS); see chat_tasks.py."""
