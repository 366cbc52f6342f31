"""A few deformations of an avatar's 468-point metric mesh: jaw open, lip spread, rounding, press, blink.

Each is a (468, 3) displacement field in canonical space (cm, y up, z towards the viewer) built once
from the avatar's own mesh, so motion drivers only produce a handful of coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecast.models.face import topology as T

JAW_PIVOT_ABOVE_MOUTH_CM = 3.5  # the jaw hinge sits near the ear, above and behind the mouth
JAW_PIVOT_BEHIND_CM = 6.0
# The rest pose closes a photo's open mouth a little past shut, so the lips meet all along (the gap is
# narrower at the corners than at the centre); little more, or speech must first undo the overlap.
REST_OVERSHOOT = 1.15


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Expression:
    """Mouth shape coefficients. jaw: lower-lip drop in cm; the others are 0..1."""

    jaw: float = 0.0
    spread: float = 0.0
    round: float = 0.0
    press: float = 0.0
    fv: float = 0.0  # lower lip up and back under the upper teeth (F, V)


# The shapes a viewer should tell apart, as `facecast bench look` shows them (jaw in cm).
SHAPES: dict[str, Expression] = {
    "rest": Expression(),
    "open vowel": Expression(jaw=1.3),
    "rounded": Expression(jaw=0.5, round=1.0),
    "spread": Expression(jaw=0.25, spread=1.0),
    "F/V": Expression(fv=1.0),
    "closure": Expression(press=1.0),
}


class FaceRig:
    """Linear deformation bases over one avatar's mesh (468, 3)."""

    def __init__(self, mesh: np.ndarray) -> None:
        v = np.asarray(mesh, np.float64)
        self.mesh = v
        self.jaw = self._jaw_basis(v)
        self.spread, self.round = self._corner_bases(v)
        self.press = self._press_basis(v)
        self.blink_upper, self.blink_lower = self._blink_bases(v)
        self.blink = self.blink_upper + self.blink_lower
        self.fv = self._fv_basis(v)
        self.rest = self._rest_closure(v, self.jaw)

    @staticmethod
    def _jaw_basis(v: np.ndarray) -> np.ndarray:
        """Rotation of the lower face about a hinge near the ears, linearised; 1 cm at the lower lip."""
        mouth_y = 0.5 * (v[13, 1] + v[14, 1])
        corner_x = 0.5 * (abs(v[61, 0]) + abs(v[291, 0]))
        y, x = v[:, 1], np.abs(v[:, 0])
        # Below the mouth line the jaw moves; the lateral fade keeps the cheeks near the ears still.
        w = _smoothstep(mouth_y + 0.3, mouth_y - 2.0, y) * np.interp(x, [3.5, 7.5], [1.0, 0.35])
        near_lips = (x <= corner_x + 0.4) & (np.abs(y - mouth_y) < 1.6)
        w = np.where(near_lips, _smoothstep(mouth_y + 0.12, mouth_y - 0.12, y), w)
        w[T.UPPER_LIP] = 0.0
        w[T.LOWER_LIP] = 1.0
        w[T.MOUTH_CORNERS] = 0.35
        pivot_y = mouth_y + JAW_PIVOT_ABOVE_MOUTH_CM
        pivot_z = v[14, 2] - JAW_PIVOT_BEHIND_CM
        d = np.zeros_like(v)
        d[:, 1] = -(v[:, 2] - pivot_z)
        d[:, 2] = v[:, 1] - pivot_y
        d *= w[:, None]
        return d / abs(d[14, 1])

    @staticmethod
    def _corner_bases(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spread pulls the corners apart (0.35 cm); rounding pulls them in (0.4 cm) and pushes lips forward."""
        spread = np.zeros_like(v)
        rnd = np.zeros_like(v)
        for corner in (61, 291):
            dist = np.linalg.norm(v - v[corner], axis=1)
            g = np.exp(-(dist**2) / (2 * 0.8**2))
            side = np.sign(v[corner, 0])
            spread[:, 0] += side * 0.35 * g
            spread[:, 2] -= 0.1 * g
            rnd[:, 0] -= side * 0.4 * g
        lips = T.UPPER_LIP + T.LOWER_LIP
        rnd[lips, 2] += 0.25
        return spread, rnd

    @staticmethod
    def _press_basis(v: np.ndarray) -> np.ndarray:
        """Lips pressed: a slight squeeze beyond closed (thinner lips)."""
        d = np.zeros_like(v)
        d[T.LOWER_LIP, 1] = 0.06
        d[T.UPPER_LIP, 1] = -0.04
        return d

    @staticmethod
    def _rest_closure(v: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """Closes the portrait's own mouth (a smile showing teeth): silence is a closed, relaxed mouth.

        The jaw rises by 60% of the gap and the upper lip comes down by 40%, with an overshoot so the
        lips meet all along (the gap is narrower at the corners than at the centre); the skin above the
        upper lip follows with a smooth falloff so the warp never folds. Speech opens from there.
        """
        gap = REST_OVERSHOOT * max(0.0, v[13, 1] - v[14, 1])
        d = -0.6 * gap * jaw
        corner_x = 0.5 * (abs(v[61, 0]) + abs(v[291, 0]))
        above = np.clip(1.0 - (v[:, 1] - v[0, 1]) / 1.5, 0.0, 1.0)  # 1 at the upper lip, 0 at 1.5 cm above
        lateral = np.clip(1.0 - (np.abs(v[:, 0]) - corner_x) / 1.0, 0.0, 1.0)
        w_up = np.where(v[:, 1] > 0.5 * (v[13, 1] + v[14, 1]), above * lateral, 0.0)
        w_up[T.UPPER_LIP] = 1.0
        d[:, 1] -= 0.4 * gap * w_up
        return d

    @staticmethod
    def _fv_basis(v: np.ndarray) -> np.ndarray:
        """F/V: the upper lip lifts a little off the teeth and the lower lip tucks up and back under them."""
        d = np.zeros_like(v)
        d[T.UPPER_LIP, 1] = 0.16
        d[T.LOWER_LIP, 1] = -0.06
        d[T.LOWER_LIP, 2] = -0.2
        for corner in T.MOUTH_CORNERS:
            d[corner, 1] = 0.04
        return d

    @staticmethod
    def _blink_bases(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper lids down onto the lower lids (and the skin just above them partly); the lower lids up a
        little. Two fields: the warp renderer paints the upper lid instead of moving it."""
        d = np.zeros_like(v)
        lower_part = np.zeros_like(v)
        for pairs in (T.LEFT_EYELID_PAIRS, T.RIGHT_EYELID_PAIRS):
            upper = [u for u, _ in pairs]
            for u, lo in pairs:
                d[u] = 0.85 * (v[lo] - v[u])
                lower_part[lo] = 0.12 * (v[u] - v[lo])
            # Skin above the lid follows part of the way so the lid does not fold.
            for i in range(len(v)):
                if i in upper or np.any(d[i]):
                    continue
                dist = np.linalg.norm(v[upper] - v[i], axis=1)
                j = int(np.argmin(dist))
                if dist[j] < 0.9 and v[i, 1] > v[upper[j], 1]:
                    d[i] = d[upper[j]] * 0.35 * (1.0 - dist[j] / 0.9)
        return d, lower_part

    def offsets(self, expr: Expression, blink: float = 0.0) -> np.ndarray:
        """(468, 3) float32 mesh offsets for an expression and a blink amount (0 open .. 1 closed)."""
        out = (
            self.rest
            + expr.jaw * self.jaw
            + expr.spread * self.spread
            + expr.round * self.round
            + expr.press * self.press
            + expr.fv * self.fv
            + blink * self.blink
        )
        return out.astype(np.float32)
