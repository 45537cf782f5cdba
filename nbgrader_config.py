"""nbgrader: the master notebooks live in solutions/, the generated student release in assignments/.

Only `nbgrader generate_assignment --no-db` is used (no gradebook database); grading is done by
`pytest autograder/` (see README).
"""
import os

c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
