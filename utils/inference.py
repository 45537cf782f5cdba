"""Batched, model-agnostic inference for anchor-based face detectors: images in, detections out.

``Detector`` takes the model and the functions that give it meaning (prior generator, box and
landmark decoders), so RetinaFace, DSFD or TinaFace plug in alike, with the students' own versions
or the solutions'. One call handles a batch of images of different sizes:

1. each uint8 BGR image becomes float32 minus the mean (BGR) and is padded on the bottom/right to
   the batch's largest height and width, so pixel coordinates stay valid for every image;
2. one forward pass; the model returns ``(loc [B, P, 4], conf [B, P, C] logits[, landm [B, P, 10]])``
   for the P priors of the padded input size (priors are computed once per size and cached);
3. post-processing, vectorised over the whole batch: face scores, keep scores > ``conf_thresh``,
   the ``top_k`` best per image, decode only those candidates, one ``torchvision.ops.batched_nms``
   call for the batch (IoU > ``nms_thresh`` suppresses, never across images), the ``keep_top_k``
   best per image, landmarks decoded for the survivors only.

The defaults are those of the public Pytorch_Retinaface test script (conf 0.02, top-k 5000, NMS 0.4,
keep-top-k 750, mean (104, 117, 123)); a single image at its original size gives its results.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms

from data.augment import BGR_MEAN

DEFAULT_VARIANCES = (0.1, 0.2)   # cfg['variance'] of the public configurations
CONF_THRESH = 0.02               # candidates must score above this
NMS_THRESH = 0.4                 # IoU above which a lower-scoring box is suppressed
TOP_K = 5000                     # candidates per image kept for NMS, best first
KEEP_TOP_K = 750                 # detections per image kept after NMS, best first
FACE_CLASS = 1                   # column of the face class in conf (0 is background)
PRIOR_CACHE_SIZE = 16            # input sizes whose priors are kept (WIDER val has hundreds of sizes)
BOX_COORDS, LANDMARK_COORDS = 4, 10


def softmax_face_scores(conf: torch.Tensor) -> torch.Tensor:
    """conf: [B, P, C] class logits -> [B, P] probability of the face class (softmax over C)."""
    if conf.shape[-1] == 2:  # the same value as a sigmoid of the difference, ~20x faster on CPU
        return torch.sigmoid(conf[..., FACE_CLASS] - conf[..., 1 - FACE_CLASS])
    return conf.softmax(dim=-1)[..., FACE_CLASS]


@dataclass(frozen=True)
class Detections:
    """The faces found in one image, best first.

    boxes: [K, 4] float32 (x1, y1, x2, y2) pixels of the original image; scores: [K] float32;
    landmarks: [K, 10] float32 (l0x, l0y, ..., l4x, l4y) pixels, or None for a model without them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> "Detections":
        """Only the detections scoring >= ``threshold`` (e.g. the 0.6 used for display)."""
        keep = self.scores >= threshold
        landmarks = None if self.landmarks is None else self.landmarks[keep]
        return Detections(self.boxes[keep], self.scores[keep], landmarks)

    def wider_rows(self) -> np.ndarray:
        """[K, 5] float64 (x, y, w, h, score) pixels, the rows of a WIDER FACE prediction file."""
        boxes = self.boxes.astype(np.float64)
        return np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2],
                                self.scores.astype(np.float64)]).reshape(-1, 5)


class PriorCache:
    """``prior_fn((H, W)) -> [P, 4] (cx, cy, w, h)`` normalised, computed once per (H, W, device).

    The least recently used sizes are dropped beyond ``max_sizes`` entries.
    """

    def __init__(self, prior_fn: Callable[[tuple[int, int]], torch.Tensor],
                 max_sizes: int = PRIOR_CACHE_SIZE) -> None:
        self.prior_fn = prior_fn
        self.max_sizes = max_sizes
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def __call__(self, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        key = (int(size[0]), int(size[1]), str(device))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        priors = torch.as_tensor(self.prior_fn((key[0], key[1])), dtype=torch.float32).to(device)
        if priors.ndim != 2 or priors.shape[1] != BOX_COORDS:
            raise ValueError(f"the prior generator returned shape {tuple(priors.shape)} for input "
                             f"size {key[:2]}; expected [P, 4] (cx, cy, w, h)")
        self._cache[key] = priors
        if len(self._cache) > self.max_sizes:
            self._cache.popitem(last=False)
        return priors


def first_k_per_image(image_idx: torch.Tensor, k: int, num_images: int) -> torch.Tensor:
    """Indices of the first ``k`` rows of each image, grouped by image, in their given order.

    image_idx: [N] int64 image of each row (rows already best first give the k best per image).
    """
    order = torch.argsort(image_idx, stable=True)                                 # [N] grouped
    counts = torch.bincount(image_idx, minlength=num_images)                      # [num_images]
    if int(counts.max()) <= k:
        return order
    starts = torch.cumsum(counts, 0) - counts                                     # first row of each
    rank = torch.arange(len(order), device=order.device) - starts.index_select(0, image_idx[order])
    return order[rank < k]


def top_k_per_image(image_idx: torch.Tensor, scores: torch.Tensor, k: int,
                    num_images: int) -> torch.Tensor:
    """Indices of the ``k`` best-scoring rows of each image, grouped by image, best first.

    image_idx: [N] int64 image of each row; scores: [N]. Ties keep the original row order.
    """
    order = torch.argsort(scores, descending=True, stable=True)                   # [N] best first
    return order[first_k_per_image(image_idx[order], k, num_images)]


def _shape(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _check_decoded(decoded: torch.Tensor, rows: int, width: int, what: str) -> torch.Tensor:
    if not isinstance(decoded, torch.Tensor) or tuple(decoded.shape) != (rows, width):
        raise ValueError(f"{what} returned {_shape(decoded)} for {rows} rows; expected a [{rows}, {width}] tensor")
    return decoded


class Detector:
    """Detect faces in batches of images with any anchor-based model.

    model: ``model(x [B, 3, H, W] float) -> (loc [B, P, 4], conf [B, P, C] logits[, landm [B, P, 10]])``;
        it is run in eval mode (its previous mode is restored afterwards) without gradients.
    prior_fn: ``(H, W) -> [P, 4]`` priors (cx, cy, w, h) normalised, in the model's row order.
    decode_fn: ``(loc [K, 4], priors [K, 4], variances) -> [K, 4] (x1, y1, x2, y2)`` normalised.
    decode_landm_fn: ``(landm [K, 10], priors [K, 4], variances) -> [K, 10]`` normalised, or None.
    score_fn: ``conf [B, P, C] -> [B, P]`` face scores (softmax over classes by default).
    postprocess_fn: None (the vectorised batch pipeline above), or one image's post-processing
        written elsewhere (the RetinaFace homework's ``postprocess``), called once per image as
        ``postprocess_fn(loc [P, 4], conf [P, C], landm [P, 10] or None, priors [P, 4], (H, W),
        variances=, conf_thresh=, nms_thresh=, top_k=, keep_top_k=) -> (boxes [K, 4] pixels,
        scores [K], landmarks [K, 10] pixels or None)``, best first; it replaces steps 3's scoring,
        decoding and NMS (``score_fn``, ``decode_fn``, ``decode_landm_fn`` are then unused).
    device: where inputs and post-processing go; None = the device of the model's parameters.
    """

    def __init__(self, model: torch.nn.Module, prior_fn: Callable, decode_fn: Callable,
                 decode_landm_fn: Callable | None = None, variances: Sequence[float] = DEFAULT_VARIANCES,
                 *, conf_thresh: float = CONF_THRESH, nms_thresh: float = NMS_THRESH, top_k: int = TOP_K,
                 keep_top_k: int = KEEP_TOP_K, mean: Sequence[float] = BGR_MEAN,
                 score_fn: Callable[[torch.Tensor], torch.Tensor] = softmax_face_scores,
                 postprocess_fn: Callable | None = None,
                 device: str | torch.device | None = None) -> None:
        for name, value in (("conf_thresh", conf_thresh), ("nms_thresh", nms_thresh)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name, value in (("top_k", top_k), ("keep_top_k", keep_top_k)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive count, got {value}")
        if len(mean) != 3:
            raise ValueError(f"mean must have 3 values (B, G, R), got {mean!r}")
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.model = model
        self.priors = PriorCache(prior_fn)
        self.decode_fn, self.decode_landm_fn, self.score_fn = decode_fn, decode_landm_fn, score_fn
        self.postprocess_fn = postprocess_fn
        self.variances = tuple(float(v) for v in variances)
        self.conf_thresh, self.nms_thresh = float(conf_thresh), float(nms_thresh)
        self.top_k, self.keep_top_k = int(top_k), int(keep_top_k)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """images: uint8 BGR arrays [H, W, 3], sizes may differ -> one Detections per image."""
        if len(images) == 0:
            return []
        batch = self.prepare(images)
        return self.postprocess(self.forward(batch), batch.shape[-2:])

    def prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """-> batch [B, 3, H, W] float32 minus the mean, zero-padded bottom/right to the largest
        height and width (so the detections' pixels are each image's own)."""
        for i, image in enumerate(images):
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3):
                got = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                       else type(image).__name__)
                raise ValueError(f"image {i}: expected a uint8 BGR array [H, W, 3], got {got}")
        sizes = [(image.shape[0], image.shape[1]) for image in images]
        height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
        # Zero after the subtraction is the mean colour, the padding the public training uses.
        batch = torch.zeros(len(images), 3, height, width, device=self.device)
        for i, (image, (h, w)) in enumerate(zip(images, sizes)):
            pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
            batch[i, :, :h, :w] = pixels.permute(2, 0, 1).float() - self.mean[:, None, None]
        return batch

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's raw outputs for a prepared batch (eval mode, no gradients)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return tuple(self.model(batch))
        finally:
            self.model.train(was_training)

    def postprocess(self, outputs: Sequence[torch.Tensor], input_size: Sequence[int]) -> list[Detections]:
        """Raw outputs for a batch -> one Detections per image, in pixels (not clipped).

        outputs: (loc [B, P, 4], conf [B, P, C][, landm [B, P, 10]]) for an input of ``input_size``
        (H, W), whose pixels are those of every (unpadded) image in the batch.
        """
        loc, conf = outputs[0].float(), outputs[1].float()
        use_landm = self.decode_landm_fn is not None and len(outputs) > 2
        landm = outputs[2].float() if use_landm else None
        num_images = loc.shape[0]
        height, width = int(input_size[0]), int(input_size[1])
        priors = self.priors((height, width), loc.device)
        if loc.shape[1:] != (priors.shape[0], BOX_COORDS) or conf.shape[:2] != loc.shape[:2]:
            raise ValueError(f"the model gave loc {tuple(loc.shape)} and conf {tuple(conf.shape)} for "
                             f"input size {height}x{width}, whose prior "
                             f"generator gives {priors.shape[0]} priors; expected [B, P, 4], [B, P, C]")

        if self.postprocess_fn is not None:
            return [self._postprocess_one(loc[b], conf[b], None if landm is None else landm[b], priors,
                                          (height, width)) for b in range(num_images)]

        # Flat rows (image * P + prior), already grouped by image: one index_select per tensor.
        flat_scores = self.score_fn(conf).reshape(-1)                            # [B * P]
        rows = torch.nonzero(flat_scores > self.conf_thresh).squeeze(1)          # [N]
        if len(rows) == 0:
            return [self._empty(use_landm) for _ in range(num_images)]
        num_priors = priors.shape[0]
        image_idx = torch.div(rows, num_priors, rounding_mode="floor")           # [N]
        cand_scores = flat_scores.index_select(0, rows)
        # Sorting by score is needed only where an image has more than top_k candidates.
        if int(torch.bincount(image_idx, minlength=num_images).max()) > self.top_k:
            cand = top_k_per_image(image_idx, cand_scores, self.top_k, num_images)
            rows, image_idx, cand_scores = rows[cand], image_idx[cand], cand_scores[cand]
        prior_idx = rows - image_idx * num_priors                                # [K]
        pixels = torch.tensor([width, height], dtype=torch.float32, device=loc.device)
        boxes = self.decode_fn(loc.reshape(-1, BOX_COORDS).index_select(0, rows),
                               priors.index_select(0, prior_idx), self.variances)
        boxes = _check_decoded(boxes, len(rows), BOX_COORDS, "decode_fn") * pixels.repeat(2)

        kept = batched_nms(boxes, cand_scores, image_idx, self.nms_thresh)       # best first
        kept = kept[first_k_per_image(image_idx[kept], self.keep_top_k, num_images)]
        landmarks = None
        if use_landm:
            points = self.decode_landm_fn(landm.reshape(-1, LANDMARK_COORDS).index_select(0, rows[kept]),
                                          priors.index_select(0, prior_idx[kept]), self.variances)
            points = _check_decoded(points, len(kept), LANDMARK_COORDS, "decode_landm_fn")
            landmarks = (points * pixels.repeat(LANDMARK_COORDS // 2)).cpu().numpy()
        counts = torch.bincount(image_idx[kept], minlength=num_images).tolist()
        splits = np.cumsum(counts)[:-1]
        per_box = np.split(boxes[kept].cpu().numpy(), splits)
        per_score = np.split(cand_scores[kept].cpu().numpy(), splits)
        per_landm = np.split(landmarks, splits) if landmarks is not None else [None] * num_images
        return [Detections(b, s, lm) for b, s, lm in zip(per_box, per_score, per_landm)]

    def _postprocess_one(self, loc: torch.Tensor, conf: torch.Tensor, landm: torch.Tensor | None,
                         priors: torch.Tensor, input_size: tuple[int, int]) -> Detections:
        """One image through ``postprocess_fn``, its results checked and converted to numpy."""
        result = self.postprocess_fn(loc, conf, landm, priors, input_size, variances=self.variances,
                                     conf_thresh=self.conf_thresh, nms_thresh=self.nms_thresh,
                                     top_k=self.top_k, keep_top_k=self.keep_top_k)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise ValueError(f"postprocess_fn returned {type(result).__name__}; expected a tuple "
                             f"(boxes [K, 4], scores [K], landmarks [K, 10] or None)")
        boxes, scores, points = result
        if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
            raise ValueError(f"postprocess_fn returned scores of {_shape(scores)}; expected a [K] tensor")
        count = len(scores)
        boxes = _check_decoded(boxes, count, BOX_COORDS, "postprocess_fn (boxes)")
        if landm is not None and points is not None:
            points = _check_decoded(points, count, LANDMARK_COORDS, "postprocess_fn (landmarks)")
            points = points.detach().float().cpu().numpy()
        elif landm is not None or points is not None:
            raise ValueError("postprocess_fn must return landmarks exactly when it is given landm "
                             f"(given {'landm' if landm is not None else 'None'}, returned {_shape(points)})")
        return Detections(boxes.detach().float().cpu().numpy(), scores.detach().float().cpu().numpy(), points)

    @staticmethod
    def _empty(with_landmarks: bool) -> Detections:
        landmarks = np.zeros((0, LANDMARK_COORDS), np.float32) if with_landmarks else None
        return Detections(np.zeros((0, BOX_COORDS), np.float32), np.zeros(0, np.float32), landmarks)


def predict_dataset(detector: Detector, items: Iterable[tuple[object, np.ndarray]],
                    batch_size: int = 1) -> Iterator[tuple[object, Detections]]:
    """Detections for a stream of ``(key, uint8 BGR image)`` pairs, yielded as ``(key, Detections)``.

    Consecutive images are batched ``batch_size`` at a time (padded to the batch's largest size;
    1 = every image at its original size, as the public evaluation does). Keys pass through
    untouched (e.g. ``(event, image name)`` for ``utils.wider_predictions.write_predictions``).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive count, got {batch_size}")
    keys, images = [], []
    for key, image in items:
        keys.append(key)
        images.append(image)
        if len(images) == batch_size:
            yield from zip(keys, detector.detect(images))
            keys, images = [], []
    if images:
        yield from zip(keys, detector.detect(images))
