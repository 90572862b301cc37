"""Slow, loop-based references of the WSOL protocol (Choe et al. 2020) used as test oracles.

They follow the protocol's reference code step by step: one ``cv2.threshold`` and one
``cv2.findContours`` per threshold, Python loops over boxes and thresholds.
"""

from __future__ import annotations

import cv2
import numpy as np


def oracle_binary_boxes(binary: np.ndarray, multi_contour: bool) -> np.ndarray:
    """Protocol boxes of a binary image, straight from ``cv2.findContours``."""
    height, width = binary.shape[:2]
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.asarray(boxes, dtype=np.int64)


def oracle_boxes(scoremap: np.ndarray, thresholds, multi_contour: bool) -> list[np.ndarray]:
    """Boxes per threshold of a float64 map, straight from ``cv2.findContours``."""
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    result = []
    for threshold in thresholds:
        _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
        result.append(oracle_binary_boxes(binary, multi_contour))
    return result


def oracle_iou(box_a, box_b) -> float:
    """IoU of two boxes with Python ints, the protocol's formula."""
    ix = max(0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]) + 1)
    iy = max(0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]) + 1)
    inter = ix * iy
    area_a = (box_a[2] - box_a[0] + 1) * (box_a[3] - box_a[1] + 1)
    area_b = (box_b[2] - box_b[0] + 1) * (box_b[3] - box_b[1] + 1)
    denominator = area_a + area_b - inter
    return 0.0 if denominator <= 0 else inter / denominator


def oracle_correct(maps, gt_boxes, thresholds, iou_thresholds, multi_contour) -> np.ndarray:
    """``(len(iou_thresholds), T)`` correct counts over images."""
    correct = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(maps, gt_boxes, strict=True):
        per_threshold = oracle_boxes(np.asarray(scoremap, dtype=np.float64), thresholds,
                                     multi_contour)
        for t, boxes in enumerate(per_threshold):
            best = max(oracle_iou(b.tolist(), g) for b in boxes for g in np.asarray(gt).tolist())
            for row, iou_threshold in enumerate(iou_thresholds):
                correct[row, t] += best >= iou_threshold
    return correct


def oracle_pxap(maps, masks, thresholds) -> float:
    """PxAP with two ``numpy.histogram`` calls per image and the reference's AUC formula."""
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    fg_hist = np.zeros(len(edges) - 1)
    bg_hist = np.zeros(len(edges) - 1)
    for scoremap, mask in zip(maps, masks, strict=True):
        scoremap = np.asarray(scoremap, dtype=np.float64)
        fg_hist += np.histogram(scoremap[mask == 1], bins=edges)[0]
        bg_hist += np.histogram(scoremap[mask == 0], bins=edges)[0]
    num_gt_true = fg_hist.sum()
    tp = fg_hist[::-1].cumsum()
    fn = num_gt_true - tp
    fp = bg_hist[::-1].cumsum()
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100)
