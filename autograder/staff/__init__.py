"""Course staff's grading: Gradescope's entry point, class grading (gradebook, summary, written
answers) and the making of reference tensors. Never shipped to students (the student bundle copies
``autograder/`` by folder and leaves this one out); the core never imports it.
"""
