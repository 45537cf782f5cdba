"""Every graded unit of the TinaFace homework (``UNITS``), from the model part and the boxes/losses part."""
from autograder.tinaface import cases_boxes, cases_model

UNITS = cases_model.UNITS + cases_boxes.UNITS
