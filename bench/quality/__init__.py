"""Cut-out quality benchmark (issue 5): ours vs rembg over the same model file, on the
ground-truth sets in ../shared/quality, plus a synthetic colour check. `make bench-quality`."""
