"""What makes two photos the same picture, or merely alike: a perceptual hash (imagehash's pHash of the photo) and
the classifier's pooled features from the analysis' own run (no extra model).

"Same photo" (a near-duplicate: resized, re-encoded, cropped a little, brighter or darker, turned a few degrees) and
"similar scene" (two photos of dogs on grass) are kept apart by thresholds chosen on the shipped photos and edited
copies of them (``benchmarks/bench_similar.py``): near-duplicates are close in *both* hash and features, or in
features far beyond what two different photos of one scene reach.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

#: a pair is the same picture when its pHashes differ in at most this many of 64 bits and its features agree
#: to at least NEAR_DUPLICATE_WITH_HASH; or, whatever the hash says (a crop or a turn moves it), when the features
#: agree to at least NEAR_DUPLICATE_COSINE (benchmarks/bench_similar.py). A copy cropped, halved and recompressed at
#: once keeps 8-24 bits and 0.66-0.91 of cosine; different photos differ by 18-44 bits at 0.57 of cosine at most
NEAR_DUPLICATE_BITS = 24
NEAR_DUPLICATE_WITH_HASH = 0.62
NEAR_DUPLICATE_COSINE = 0.85


def perceptual_hash(pixels: np.ndarray) -> int:
    """imagehash's pHash (DCT of a 32x32 grey copy) as a 64-bit number."""
    return int(str(imagehash.phash(Image.fromarray(pixels))), 16)


def hash_distance(a: int | np.ndarray, b: int) -> np.ndarray:
    """Differing bits between pHashes (``a`` may be an array of them)."""
    return np.bitwise_count(np.asarray(a, dtype=np.uint64) ^ np.uint64(b)).astype(np.int64)


def near_duplicate(bits: np.ndarray | int, cosine: np.ndarray | float) -> np.ndarray:
    """Whether pairs with these hash distances and feature cosines are one picture, edited."""
    bits, cosine = np.asarray(bits), np.asarray(cosine)
    return ((bits <= NEAR_DUPLICATE_BITS) & (cosine >= NEAR_DUPLICATE_WITH_HASH)) | (cosine >= NEAR_DUPLICATE_COSINE)
