"""The attendance system: detector + recognizer on the board, the enrollment database, and their host-side twins."""
