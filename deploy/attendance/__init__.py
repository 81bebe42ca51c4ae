"""The attendance firmware's host side: the enrollment database format (face_db.py) and what is built around it."""
