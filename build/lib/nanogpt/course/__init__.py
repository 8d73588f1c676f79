"""The course's own machinery, not part of the subject: running the lecture notebooks
(notebooks.py), turning solutions into the learner's exercises and checking them (exercises.py),
and building README's tables (ladder.py). It imports the subject; the subject never imports it.
"""
