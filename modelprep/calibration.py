"""Public-domain photos to calibrate int8 variants on, taken from scikit-image's wheel.

Calibration needs real photographs of the things people cut out (a person, an animal, objects)
whose licence lets anyone redistribute them, reachable from a package registry. scikit-image's
wheel ships a few in skimage/data/; `pip download --no-deps` fetches the wheel alone (nothing is
installed) and only the photos below are kept, each checked by sha256. The research photos in
../shared/quality are never used here: they measure the result, so they must not shape it.

| photo | subject | licence (skimage.data docstrings) |
|---|---|---|
| astronaut.png | a person, studio portrait | NASA, public domain |
| camera.png | a person with a camera outdoors (grey) | CC0, Lav Varshney |
| chelsea.png | a cat | CC0, Stefan van der Walt |
| coffee.png | a cup on a table | CC0, Rachel Michetti |
| rocket.jpg | a rocket on its pad | SpaceX, public domain |
"""

from __future__ import annotations

import hashlib
import pathlib
import zipfile

from modelprep.fetch import ModelFetchError, cache_dir, downloaded_package

SCIKIT_IMAGE = "scikit-image==0.26.0"

PHOTOS: dict[str, str] = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}


# Held out from calibration, to check each candidate's masks against the fp32 reference (a
# figure from the photos int8 was calibrated on would flatter it). Same wheel, same licences:
# motorcycle_left (CC0, Middlebury stereo), coins (Greek coins, public domain), clock_motion
# (CC0, Stefan van der Walt), horse (public domain silhouette).
CHECK_PHOTOS: dict[str, str] = {
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "clock_motion.png": "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
    "horse.png": "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
}


class CalibrationPhotosError(RuntimeError):
    pass


def _verified(path: pathlib.Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def ensure_photos(root: pathlib.Path | None = None, photos: dict[str, str] = PHOTOS) -> list[pathlib.Path]:
    """Paths of the verified `photos` (default: the calibration ones), fetching scikit-image's
    wheel once if needed."""
    folder = (root or cache_dir()) / "calibration"
    paths = [folder / name for name in photos]
    if all(_verified(path, photos[path.name]) for path in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with downloaded_package("pypi", SCIKIT_IMAGE, None, folder) as wheel, zipfile.ZipFile(wheel) as archive:
            for path in paths:  # the photos themselves are pinned, not the wheel around them
                data = archive.read(f"skimage/data/{path.name}")
                if hashlib.sha256(data).hexdigest() != photos[path.name]:
                    raise CalibrationPhotosError(f"{path.name} in {wheel.name} does not match its sha256")
                part = path.with_suffix(path.suffix + ".part")
                part.write_bytes(data)
                part.replace(path)
    except ModelFetchError as exc:
        raise CalibrationPhotosError(str(exc)) from None
    return paths
