"""Named landmark index sets of MediaPipe's 468-point face mesh (as in mediapipe's face_mesh_connections)."""

from __future__ import annotations

# Face oval, in order around the face starting at the forehead centre.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]  # fmt: skip

# Inner lip ring in order (corner 78 → upper lip → corner 308 → lower lip).
INNER_LIP_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
INNER_LIP_LOWER = [308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78]
INNER_LIP_RING = INNER_LIP_UPPER + INNER_LIP_LOWER[1:-1]

UPPER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 191, 80, 81, 82, 13, 312, 311, 310, 415]
LOWER_LIP = [146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324]
MOUTH_CORNERS = [61, 291, 78, 308]
# Outer lip ring in order (corner 61 → upper lip → corner 291 → lower lip).
OUTER_LIP_RING = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]

# Eyelids: (upper, lower) vertex pairs facing each other, for blinks.
LEFT_EYELID_PAIRS = [(466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382)]
RIGHT_EYELID_PAIRS = [(246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155)]
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 263, 33

# Eye contours, corner to corner along the upper and along the lower lid margin (the same corners).
RIGHT_EYE_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133]
RIGHT_EYE_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_EYE_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362]
LEFT_EYE_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362]
# Lower edge of each brow, from its outer end inwards: how far up the lid skin reaches.
RIGHT_BROW_LOWER = [46, 53, 52, 65, 55]
LEFT_BROW_LOWER = [276, 283, 282, 295, 285]
