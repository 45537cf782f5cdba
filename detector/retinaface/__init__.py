"""RetinaFace's given parts: its configurations (``config``) and the ClassHead (``heads``)."""
