"""Oracle of the RetinaFace multibox loss (Part 7): a direct re-statement of the documented loss on
the slow-loop matching of ``oracles.py``, in float64, with its gradients."""
import torch
import torch.nn.functional as F

from autograder.retinaface import cases_loss as cases
from autograder.retinaface.oracles import match_faces
from detector.retinaface.config import cfg_mnet


def multibox_oracle(x, counts=None):
    """(loss_l, loss_c, loss_landm, grad loc, grad conf, grad landm) of the documented loss; ``counts``
    (a dict), when given, receives the numbers of positives and of positives with landmarks, the batch
    size, the anchors per image and the anchors of the batch."""
    priors = cases.loss_priors(x["image_size"]).double()
    preds = [p.detach().double().requires_grad_(True) for p in x["predictions"]]
    loc, conf, landm = preds
    loss_l = loss_c = loss_landm = torch.zeros((), dtype=torch.float64)
    num_pos = num_landm = 0
    for b, t in enumerate(x["targets"]):
        t = t.double()
        m = match_faces(cfg_mnet["overlap_thresh"], t[:, :4], priors, cfg_mnet["variance"], t[:, 14],
                        t[:, 4:14], cfg_mnet["force_match_min_iou"])
        pos, with_landm = m.conf_t != 0, m.conf_t > 0
        num_pos, num_landm = num_pos + int(pos.sum()), num_landm + int(with_landm.sum())
        loss_l = loss_l + F.smooth_l1_loss(loc[b][pos], m.loc_t[pos], reduction="sum")
        loss_landm = loss_landm + F.smooth_l1_loss(landm[b][with_landm], m.landm_t[with_landm], reduction="sum")
        ce = F.cross_entropy(conf[b], pos.long(), reduction="none")
        negatives = ce[~pos].sort(descending=True).values
        keep = min(cfg_mnet["neg_pos_ratio"] * int(pos.sum()), len(priors) - 1)
        loss_c = loss_c + ce[pos].sum() + negatives[:keep].sum()
    if counts is not None:
        counts.update(pos=num_pos, landm=num_landm, batch=len(x["targets"]), anchors=len(priors),
                      batch_anchors=len(x["targets"]) * len(priors))
    losses = (loss_l / max(num_pos, 1), loss_c / max(num_pos, 1), loss_landm / max(num_landm, 1))
    (cfg_mnet["loc_weight"] * losses[0] + losses[1] + losses[2]).backward()
    return (*(v.detach() for v in losses), *(p.grad for p in preds))
