"""Library ops that compute what a RetinaFace exercise asks for: an answer that calls one of them
scores its unit 0 (``Unit.forbidden``)."""

BOX_IOU_OPS = ("torchvision.ops.box_iou", "torchvision.ops.boxes.box_iou", "torchvision.ops.generalized_box_iou",
               "torchvision.ops.complete_box_iou", "torchvision.ops.distance_box_iou",
               "torchvision.ops.boxes._box_inter_union")
NMS_OPS = ("torchvision.ops.nms", "torchvision.ops.batched_nms", "torchvision.ops.boxes.nms",
           "torchvision.ops.boxes.batched_nms", "torch.ops.torchvision.nms")
