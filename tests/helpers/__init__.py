"""Helpers the tests share: fake runs, a local hub cache, a scripted judge server, report runs."""
