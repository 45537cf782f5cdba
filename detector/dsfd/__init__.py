"""Given (non-graded) parts of the DSFD homework: configurations, backbones, box coding, matching."""
