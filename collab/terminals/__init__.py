"""Shared terminals: one pty per (project, .term path), fanned out to every viewer."""
