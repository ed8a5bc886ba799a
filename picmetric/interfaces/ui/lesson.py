"""The guided lesson: a story through the three models on one photo, one step at a time. Before each reveal the
student predicts; every technical word explains itself on hover."""

from __future__ import annotations

import html
import re

import numpy as np

#: plain-language explanations, shown on hover wherever the word appears in the lesson
GLOSSARY = {
    "tensor": "A grid of numbers with several dimensions: here colour channel × height × width.",
    "pixel": "One dot of the photo: three numbers, for red, green and blue.",
    "logit": "The raw score a network gives each class before it is turned into a probability; any number.",
    "softmax": "Turns raw scores into probabilities that add up to 100 %: bigger scores get a bigger share.",
    "class activation map": "For one label: how much each spot of the photo added to that label's score.",
    "feature map": "What one layer outputs: for each of its channels, how strongly a pattern appears at each spot.",
    "channel": "One pattern detector inside a layer (an edge direction, a colour, a texture, later a part).",
    "convolution": "Sliding a small grid of weights over the image: at each spot, multiply and add up.",
    "ReLU6": "Keeps a number between 0 and 6: negatives become 0, so a pattern is either present or not.",
    "letterbox": "Shrinking the photo to fit a square without stretching it; the empty bands are grey.",
    "anchor": "A typical box shape (tall, wide, small, large) each grid cell starts its guesses from.",
    "objectness": "How sure the detector is that a box holds any object at all.",
    "NMS": "Non-maximum suppression: of boxes that overlap a lot, keep only the most confident one.",
    "IoU": "Intersection over union: the overlap of two boxes divided by the area they cover together (0 to 1).",
    "threshold": "The lowest score a guess needs to be shown.",
    "stride": "How many input pixels one cell of a feature map stands for.",
    "landmarks": "Five points a face detector places: both eyes, the nose tip and the mouth corners.",
    "BGR": "Blue, green, red: the colour order some models (from OpenCV) expect, the reverse of the usual RGB.",
    "AP50": "Average precision when a box counts as right if it overlaps the true box by at least half (IoU 0.5).",
    "WIDER FACE": "A benchmark of 32,000 photos with 390,000 faces, from easy close-ups to tiny faces in crowds.",
    "COCO": "A dataset of 330,000 everyday photos with boxes for 80 kinds of objects.",
    "ImageNet": "A dataset of 1.2 million photos in 1,000 classes; it has dog breeds but no 'horse' or 'person'.",
}
_TERMS = re.compile("|".join(rf"\b{re.escape(term)}s?\b" for term in sorted(GLOSSARY, key=len, reverse=True)))


def explained(text: str) -> str:
    """Markdown with each glossary word (first use in this text) wrapped in a hover explanation."""
    seen: set[str] = set()

    def wrap(match: re.Match[str]) -> str:
        word = match.group(0)
        term = next(t for t in GLOSSARY if word.lower().rstrip("s") == t.lower().rstrip("s") or word == t)
        if term in seen:
            return word
        seen.add(term)
        return f'<span class="term" title="{html.escape(GLOSSARY[term])}">{word}</span>'

    return _TERMS.sub(wrap, text)


#: what ImageNet's 1,000 classes say about some COCO objects: why the label may not name what the boxes found
IMAGENET_GAPS = {
    "person": "ImageNet has no 'person' class: people are labelled by what they wear or hold (suit, jersey, bow tie).",
    "horse": "ImageNet has no plain 'horse' class: only 'sorrel', so other horses come out as ox, cart or pasture.",
    "cow": "ImageNet has no 'cow' class: cattle are 'ox'.",
    "sheep": "ImageNet has no 'sheep' class: only 'ram' and 'bighorn'.",
    "dog": "ImageNet names 118 dog breeds and no plain 'dog': a mixed breed gets its closest breed.",
    "cat": "ImageNet names cat breeds (tabby, Siamese, Persian...), no plain 'cat'.",
    "bird": "ImageNet names birds by species (goose, bald eagle, spoonbill...), no plain 'bird'.",
    "car": "ImageNet splits cars into kinds (sports car, cab, jeep, minivan, convertible...).",
    "chair": "ImageNet has only 'folding chair', 'rocking chair', 'barber chair' and 'throne'.",
    "tie": "ImageNet's 'Windsor tie' and 'bow tie' stand for every tie.",
}
TERM_STYLE = "<style>.term {border-bottom: 2px dotted #2563eb; cursor: help;}</style>"


def box_iou(box: tuple[float, float, float, float], boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (x1, y1, x2, y2) with each of ``boxes`` (N, 4)."""
    if not len(boxes):
        return np.zeros(0)
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    union = area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def verdict(guess: float, truth: float, tolerance: float = 0.0) -> str:
    """What to tell a student about a prediction: right, close, or how far off."""
    if abs(guess - truth) <= tolerance:
        return "Right!"
    if truth and abs(guess - truth) / abs(truth) <= 0.25:
        return "Close!"
    return "More than you guessed:" if guess < truth else "Fewer than you guessed:"
