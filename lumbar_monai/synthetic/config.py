"""Knobs of the synthetic lateral lumbar radiograph generator."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["SyntheticConfig"]


@dataclass
class SyntheticConfig:
    """Ranges the generator samples from (all lengths in mm unless marked px; angles in degrees).

    Defaults follow the issue: adult lumbar anatomy (body depth 35-45 mm, height 25-30 mm growing L1->L5,
    discs 8-12 mm), L1-S1 lordosis about N(50, 9) clipped to 20-80, sacral slope tied to lordosis (typically
    30-50), detector spacing 0.1-0.2 mm, image sides about 1000-3000 px (mostly 2000-3000).

    Args:
        size_px: range of the image height in px before ``max_side`` (width follows from ``aspect``).
        large_fraction: fraction of images whose height is drawn from ``large_size_px`` (typical 2000-3000).
        large_size_px: the typical height range.
        aspect: range of width / height.
        spacing_mm: detector pixel spacing range.
        fov_mm: range of the field-of-view height; the spacing is ``fov / height`` clipped to ``spacing_mm``
            (grown when the landmarks would not fit with a margin).
        max_side: if set, images are generated directly at most this many px a side (spacing grows
            accordingly): the fast option for tests and CI.
        render_max_side: the density (thickness) map is rasterised at most this many px a side, then upsampled.
        lordosis_deg: (mean, sd, min, max) of the L1-S1 Cobb angle.
        sacral_slope_deg: (min, max) clip of the sacral slope (patient frame).
        body_height_mm, body_depth_mm, disc_height_mm: anatomical ranges (L1 small end, L5 large end).
        rotation_deg: maximum absolute in-plane rotation of the detector.
        facing_right_prob: probability that the patient faces image-right.
        fracture_prob: probability that an image has a compression fracture (one, sometimes two vertebrae).
        fracture_loss: range of the fractional loss of anterior height.
        slip_prob: probability of a spondylolisthesis of L4 or L5.
        slip_fraction: range of the anterior slip as a fraction of the lower end plate's depth.
        occlusion_prob: probability that L1 and/or L2 are hidden under a shadow.
        degeneration_prob: probability of a degenerative spine: anterior osteophytes at some corners, narrowed
            lower discs (down to ``degenerated_disc_mm``) with end-plate sclerosis, sometimes a vacuum phenomenon.
        degenerated_disc_mm: the lowest mean height a degenerated disc is narrowed to.
        aortic_calcification_prob: probability of calcified plaques in the abdominal aorta wall (in front of L1-L4).
        hardware_prob: probability of posterior spinal fixation (pedicle screws and rods, L3/L4/L5 to S1).
        marker_prob: probability of a lead side marker ("L"/"R") burnt into a corner of the image.
        collimation_prob: probability of visible collimator edges (unexposed, bright borders).
        bowel_gas: (min, max) number of gas blobs.
        photons: range of detected quanta per pixel behind the spine (lower = noisier).
        blur_px: range of the detector blur sigma in px.
        bits_stored: (min, max) of the stored bit depth.
        body_mask: also rasterise the vertebral-body label mask (1..V in layout order) at full resolution.
    """

    size_px: tuple[int, int] = (1000, 2000)
    large_fraction: float = 0.75
    large_size_px: tuple[int, int] = (2000, 3000)
    aspect: tuple[float, float] = (0.6, 1.0)
    spacing_mm: tuple[float, float] = (0.1, 0.2)
    fov_mm: tuple[float, float] = (290.0, 440.0)
    max_side: int | None = None
    render_max_side: int = 1100
    lordosis_deg: tuple[float, float, float, float] = (50.0, 9.0, 20.0, 80.0)
    sacral_slope_deg: tuple[float, float] = (20.0, 60.0)
    body_height_mm: tuple[float, float] = (25.0, 30.0)
    body_depth_mm: tuple[float, float] = (35.0, 45.0)
    disc_height_mm: tuple[float, float] = (8.0, 12.0)
    rotation_deg: float = 8.0
    facing_right_prob: float = 0.1
    fracture_prob: float = 0.15
    fracture_loss: tuple[float, float] = (0.2, 0.45)
    slip_prob: float = 0.15
    slip_fraction: tuple[float, float] = (0.08, 0.3)
    occlusion_prob: float = 0.3
    degeneration_prob: float = 0.25
    degenerated_disc_mm: float = 5.0
    aortic_calcification_prob: float = 0.2
    hardware_prob: float = 0.04
    marker_prob: float = 0.5
    collimation_prob: float = 0.3
    bowel_gas: tuple[int, int] = (2, 14)
    photons: tuple[float, float] = (40.0, 600.0)
    blur_px: tuple[float, float] = (0.5, 1.1)
    bits_stored: tuple[int, int] = (12, 16)
    body_mask: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        probs = ("large_fraction", "facing_right_prob", "fracture_prob", "slip_prob", "occlusion_prob")
        probs += ("degeneration_prob", "aortic_calcification_prob", "hardware_prob", "marker_prob", "collimation_prob")
        for name in probs:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"SyntheticConfig.{name} must be a probability in [0, 1], got {v}")
        ranges = ("size_px", "large_size_px", "aspect", "spacing_mm", "fov_mm", "sacral_slope_deg", "body_height_mm")
        ranges += ("body_depth_mm", "disc_height_mm", "fracture_loss", "slip_fraction", "bowel_gas", "photons")
        ranges += ("blur_px", "bits_stored")
        for name in ranges:
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"SyntheticConfig.{name} must be a range (low <= high, >= 0), got {(lo, hi)}")
        if not 12 <= self.bits_stored[0] <= self.bits_stored[1] <= 16:
            raise ValueError(f"SyntheticConfig.bits_stored must lie within 12..16, got {self.bits_stored}")
        if self.max_side is not None and self.max_side < 32:
            raise ValueError(f"SyntheticConfig.max_side must be at least 32 px, got {self.max_side}")
        if self.render_max_side < 16:
            raise ValueError(f"SyntheticConfig.render_max_side must be at least 16 px, got {self.render_max_side}")
        if not 0 <= self.rotation_deg <= 45:
            raise ValueError(f"SyntheticConfig.rotation_deg must be within 0..45, got {self.rotation_deg}")
        mean, sd, lo, hi = self.lordosis_deg
        if not (lo <= mean <= hi and sd >= 0):
            raise ValueError(f"SyntheticConfig.lordosis_deg must be (mean, sd, min, max), got {self.lordosis_deg}")
