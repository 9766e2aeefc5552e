"""A fake engine and test images for the service's unit tests (the engine has its own tests)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from engine.types import Box, EngineError, ImageInfo, RemovalOptions, RemovalResult

DEV_KEY = "cbg_test_key_for_unit_tests"


def png_bytes(width: int, height: int, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


@dataclass
class FakeEngine:
    """Reads the real header (so probes and sizes behave) but does no segmentation."""

    fail_with: BaseException | None = None
    calls: list[tuple[bytes, RemovalOptions]] = field(default_factory=list)
    warmed: bool = False
    lanes_opened: bool = False

    def warm_up(self) -> None:
        self.warmed = True

    def open_lanes(self) -> int:
        assert self.warmed, "lanes open after the warm-up, once the server serves"
        self.lanes_opened = True
        return 0

    def describe(self) -> dict[str, str]:
        return {"variant": "fake", "provider": "none"}

    def matte_cache_counts(self) -> tuple[int, int]:
        return 0, len(self.calls)

    def probe(self, data: bytes) -> ImageInfo:
        try:
            with Image.open(io.BytesIO(data)) as image:
                return ImageInfo(image.width, image.height, image.format or "")
        except (UnidentifiedImageError, OSError):
            raise EngineError("invalid_file_type", "not an image") from None

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        self.calls.append((data, options))
        if self.fail_with is not None:
            raise self.fail_with
        info = self.probe(data)
        width, height = info.width, info.height
        cap = options.max_output_pixels or width * height
        while width * height > cap:
            width, height = width * 9 // 10, height * 9 // 10
        return RemovalResult(
            data=b"fake-result:" + options.output_format.encode(),
            content_type="image/png",
            width=width,
            height=height,
            foreground_type="person" if options.foreground_type == "auto" else options.foreground_type,
            foreground=Box(top=1, left=2, width=width - 2, height=height - 1),
            input=info,
            foreground_label="person-fake" if options.foreground_type == "auto" else options.foreground_type,
        )


