"""Shared pipeline infrastructure: configs, manifests, errors, atomic writes and progress bars."""
