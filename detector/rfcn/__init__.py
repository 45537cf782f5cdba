"""Face R-FCN's given parts: its configurations (``config``) and the atrous ResNet trunk (``backbone``)."""
