"""The classroom course: eight labs from photos to an attendance board, each prepared by `invoke lab N` and scored
by `invoke lab-check N` (docs/labs/NN-<topic>.md)."""
