"""Running untrusted code: the scoring side's supervisor, the worker that runs student code, its
confinement (namespaces, a dedicated uid), the reaping of what it leaves, the watch on forbidden
library ops, workers forked from a preloaded server, and the format of outputs crossing back.

Ships in the student bundle with the core (``autograder/*.py``); nothing here imports
``autograder.staff``.
"""
