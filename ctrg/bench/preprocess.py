"""``ctrg bench preprocess``: resampling and whole-volume preprocessing vs MONAI and bare torch.

On a synthetic chest-like int16 volume (default 300 x 512 x 512 at 1.25 x 0.7 x 0.7 mm, LPS
affine) it times, for each target (CT-RATE preset 1.5 x 0.75 x 0.75 mm and the CPU default):

* ``bare``: ``F.interpolate(trilinear, align_corners=True)`` of a ready float32 tensor;
* ``ctrg``: our in-memory stage (int16 -> float32, resample, HU stats, window/normalise,
  reorient, crop/pad, float16);
* ``monai``: ``Spacingd(pixdim=<achieved spacing>)`` + ``ScaleIntensityRanged`` on a ready
  float32 MetaTensor, and the max |difference| to ours after normalisation;

then, from a ``.nii.gz`` on disk, ``ctrg`` (read, preprocess, write ``.npy``) vs nibabel read
+ bare interpolate. Peak memory is the largest RSS increase while a step runs (sampled every
millisecond), reported with the int16 input it holds, as a multiple of the float32 input size.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import psutil
import torch
import torch.nn.functional as F

from ctrg.data.ingest import preprocess_volume, process_case, resolve_section
from ctrg.data.nifti import RawVolume
from ctrg.data.resample import (
    canonical_view,
    normalise_,
    plan_resample,
    resample_intensity,
    to_float_canonical,
)

DEFAULT_SIZE = (300, 512, 512)
INPUT_SPACING = (1.25, 0.7, 0.7)  # (z, y, x) mm of the synthetic input of `ctrg bench speed`
TARGETS = {
    "ct-rate 1.5/0.75": ((1.5, 0.75, 0.75), (240, 480, 480)),
    "cpu default": ((6.0, 3.6, 3.6), (48, 96, 96)),
}


def synthetic_chest(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A chest-like ``(D, H, W)`` int16 HU volume: air, body, lungs, spine, ribs, noise."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    y, x = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j].astype(np.float32)
    body = (x / 0.85) ** 2 + (y / 0.6) ** 2 < 1
    lungs = ((np.abs(x) - 0.4) / 0.3) ** 2 + (y / 0.42) ** 2 < 1
    spine = x**2 + (y - 0.45) ** 2 < 0.01
    ribs = body & ~((x / 0.8) ** 2 + (y / 0.55) ** 2 < 1)
    slice_hu = np.full((h, w), -1000, np.float32)
    slice_hu[body] = 40
    slice_hu[lungs] = -850
    slice_hu[spine | ribs] = 700
    volume = np.empty(shape, np.int16)
    for k in range(d):  # lungs shrink towards the ends: anatomy varies along z
        scale = 1.0 - 0.5 * abs(2 * k / max(d - 1, 1) - 1) ** 3
        lung_k = ((np.abs(x) - 0.4) / (0.3 * scale)) ** 2 + (y / (0.42 * scale)) ** 2 < 1
        hu = np.where(lungs & ~lung_k, 40, slice_hu)
        noise = rng.standard_normal((h, w), dtype=np.float32) * 20
        volume[k] = np.clip(hu + noise, -1024, 3071).astype(np.int16)
    return volume


class PeakRSS:
    """Context manager: the largest RSS increase (bytes) over its block, sampled every 1 ms."""

    def __enter__(self) -> PeakRSS:
        self._process = psutil.Process()
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def extra(self) -> int:
        return self.peak - self.start


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, int, object]:
    """Best wall time over ``repeat`` runs, the peak RSS increase, and the last result."""
    best, peak, result = float("inf"), 0, None
    for _ in range(repeat):
        result = None
        with PeakRSS() as rss:
            start = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - start
        best, peak = min(best, elapsed), max(peak, rss.extra)
    return best, peak, result


def monai_pipeline(volume_f32: np.ndarray, affine_kji: np.ndarray, pixdim, window):
    """MONAI's way, on the same grid: Spacingd + ScaleIntensityRanged (returns the transform)."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, ScaleIntensityRanged, Spacingd

    transform = Compose([
        Spacingd(keys="image", pixdim=tuple(pixdim), mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=window[0], a_max=window[1], b_min=-1.0, b_max=1.0, clip=True),
    ])  # fmt: skip
    image = MetaTensor(torch.from_numpy(volume_f32)[None], affine=torch.from_numpy(affine_kji))
    return lambda: transform({"image": image})["image"][0]


def bench_target(name, volume, affine, section, args, rows) -> None:
    """Time bare / ctrg / monai for one target spacing and shape; append printable rows."""
    plan = plan_resample(affine, volume.shape, section["spacing"], section["shape"])
    float_input = torch.from_numpy(volume.astype(np.float32))[None, None]
    bare_t, bare_mem, _ = measure(
        lambda: F.interpolate(
            float_input, size=plan.resampled_shape, mode="trilinear", align_corners=True
        ),
        args.repeat,
    )
    raw = RawVolume(data=volume, affine=affine)
    ours_t, ours_mem, _ = measure(lambda: preprocess_volume(raw, section), args.repeat)
    in_bytes = volume.size * 4
    rows.append((name, "bare F.interpolate", bare_t, (bare_mem + volume.nbytes) / in_bytes, "", ""))
    rows.append(
        (
            name,
            "ctrg stage",
            ours_t,
            (ours_mem + volume.nbytes) / in_bytes,
            f"{ours_t / bare_t:.2f}x bare",
            "",
        )
    )
    if args.no_monai:
        return
    reference = normalise_(
        resample_intensity(to_float_canonical(volume, plan), plan), *section["hu_window"]
    )
    affine_kji = affine[:, [2, 1, 0, 3]]  # MONAI sees the native (K, J, I) array
    pixdim = [plan.resampled_spacing[plan.axis_of_output.index(p)] for p in range(3)]
    run = monai_pipeline(float_input[0, 0].numpy(), affine_kji, pixdim, section["hu_window"])
    monai_t, monai_mem, monai_out = measure(run, 1)
    monai_canonical = torch.from_numpy(canonical_view(monai_out.as_tensor().numpy(), plan).copy())
    same = tuple(monai_canonical.shape) == tuple(reference.shape)
    diff = float((monai_canonical - reference).abs().max()) if same else float("nan")
    rows.append((name, "MONAI Spacingd+ScaleIntensityRanged", monai_t, (monai_mem + in_bytes) / in_bytes,
                 f"ctrg {monai_t / ours_t:.1f}x faster", f"max|diff| {diff:.2e}"))  # fmt: skip


def bench_disk(volume, affine, section, args, rows) -> None:
    """From a .nii.gz on disk: ctrg (read, preprocess, write) vs nibabel read + bare interpolate."""
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.T), affine), tmp / "vol.nii.gz")
        plan = plan_resample(affine, volume.shape, section["spacing"], section["shape"])

        def baseline():
            data = np.asanyarray(nib.load(tmp / "vol.nii.gz").dataobj)
            x = torch.from_numpy(np.ascontiguousarray(data.T)).float()[None, None]
            return F.interpolate(x, size=plan.resampled_shape, mode="trilinear", align_corners=True)

        row = {"case_id": "bench", "image": "vol.nii.gz", "split": "test"}
        base_t, base_mem, _ = measure(baseline, args.repeat)
        ours_t, ours_mem, _ = measure(
            lambda: process_case(row, tmp, section, tmp / "out"), args.repeat
        )
    in_bytes = volume.size * 4
    name = "disk .nii.gz -> output"
    rows.append((name, "nibabel read + bare interpolate", base_t, base_mem / in_bytes, "", ""))
    rows.append(
        (
            name,
            "ctrg read+preprocess+write",
            ours_t,
            ours_mem / in_bytes,
            f"{ours_t / base_t:.2f}x baseline",
            "",
        )
    )


def main(argv: list[str]) -> int:
    """Run the preprocessing benchmark and print a table."""
    parser = argparse.ArgumentParser(
        prog="ctrg bench preprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--size", type=int, nargs=3, default=list(DEFAULT_SIZE), metavar=("D", "H", "W")
    )
    parser.add_argument(
        "--input-spacing", type=float, nargs=3, default=[1.25, 0.7, 0.7], metavar=("Z", "Y", "X")
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per timing (best is kept)")
    parser.add_argument("--no-monai", action="store_true", help="skip the MONAI baseline")
    parser.add_argument("--tmp", default=None, help="folder for the temporary .nii.gz")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    volume = synthetic_chest(tuple(args.size))
    z, y, x = args.input_spacing
    affine = np.diag([-x, -y, z, 1.0])  # LPS-like storage: reorientation flips two axes
    # a smaller --size scales the target shapes with it (same crop/pad proportions)
    factor = [n / d for n, d in zip(args.size, DEFAULT_SIZE)]
    rows: list[tuple] = []
    sections = {
        name: resolve_section(
            {
                "spacing": list(spacing),
                "shape": [max(4, round(t * f)) for t, f in zip(shape, factor)],
            }
        )
        for name, (spacing, shape) in TARGETS.items()
    }
    for name, section in sections.items():
        bench_target(name, volume, affine, section, args, rows)
    bench_disk(volume, affine, sections["ct-rate 1.5/0.75"], args, rows)
    header = f"input {tuple(args.size)} int16 at {tuple(args.input_spacing)} mm, {args.threads} thread(s), torch {torch.__version__}"
    print(header)
    print(f"{'target':<24} {'method':<38} {'seconds':>8} {'peak/f32 in':>11}  ratio")
    for target, method, seconds, memory, ratio, extra in rows:
        print(f"{target:<24} {method:<38} {seconds:8.3f} {memory:11.2f}  {ratio} {extra}".rstrip())
    return 0


def speed_row(size: tuple[int, int, int], target: str, repeats: int) -> dict[str, Any]:
    """ctrg vs MONAI volumes/s on a synthetic ``size`` volume (target shape scaled with it)."""
    volume = synthetic_chest(size)
    z, y, x = INPUT_SPACING
    affine = np.diag([-x, -y, z, 1.0])  # LPS-like storage, as in ``ctrg bench preprocess``
    spacing, shape = TARGETS[target]
    factor = [n / d for n, d in zip(size, DEFAULT_SIZE)]
    section = resolve_section(
        {"spacing": list(spacing), "shape": [max(4, round(t * f)) for t, f in zip(shape, factor)]}
    )
    rows: list[tuple] = []
    options = argparse.Namespace(repeat=repeats, no_monai=False)
    bench_target(target, volume, affine, section, options, rows)
    # rows: (target, method, seconds, memory, ratio, extra); extra "max|diff| <value>"
    seconds = {row[1]: row[2] for row in rows}
    ours, monai = seconds["ctrg stage"], seconds["MONAI Spacingd+ScaleIntensityRanged"]
    return {
        "input_shape": list(size),
        "output_shape": section["shape"],
        "target": target,
        "ctrg_volumes_per_s": 1.0 / ours,
        "monai_volumes_per_s": 1.0 / monai,
        "ctrg_vs_monai": monai / ours,
        "max_abs_diff": float(rows[-1][5].split()[-1]),
    }
