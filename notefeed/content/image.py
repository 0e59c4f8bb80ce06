"""Optional image encoder: an OpenCLIP model from a local checkpoint (extra ``notefeed[content]``).

Image vectors are normally precomputed offline and handed to :mod:`notefeed.content.fusion`;
this loader is the reference way to compute them. Nothing is downloaded: ``checkpoint`` must
be a local file for the named architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notefeed.content._common import ContentError, l2_normalise

__all__ = ["OpenClipImageEncoder"]


class OpenClipImageEncoder:
    """``encode(images) -> (n, dim)`` unit float32 vectors; images are file paths or PIL images."""

    name = "image/open-clip"

    def __init__(self, model_name: str, checkpoint: str | Path, device: str = "cpu", batch_size: int = 32) -> None:
        try:
            import open_clip
        except ImportError as e:
            raise ImportError("OpenClipImageEncoder needs the optional extra: pip install 'notefeed[content]'") from e
        path = Path(checkpoint)
        if not path.is_file():
            raise ContentError(f"checkpoint: {path} is not a file (weights are never downloaded)")
        if model_name not in open_clip.list_models():
            raise ContentError(f"model_name: unknown OpenCLIP architecture {model_name!r}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device)
        except Exception as e:  # broken or mismatched checkpoint
            raise ContentError(f"checkpoint: could not load {path} into {model_name}: {e}") from e
        self.model, self.preprocess = model.eval(), preprocess
        self.device, self.batch_size = device, batch_size

    def encode(self, images: Sequence[object]) -> np.ndarray:
        import torch
        from PIL import Image

        if not isinstance(images, Sequence) or isinstance(images, str) or len(images) == 0:
            raise ContentError("images: expected a non-empty list of paths or PIL images")
        out = []
        for s in range(0, len(images), self.batch_size):
            batch = []
            for j, im in enumerate(images[s : s + self.batch_size]):
                if isinstance(im, str | Path):
                    try:
                        im = Image.open(im).convert("RGB")
                    except OSError as e:
                        raise ContentError(f"images[{s + j}]: cannot read image ({e})") from None
                if not isinstance(im, Image.Image):
                    raise ContentError(f"images[{s + j}]: expected a path or PIL image, got {type(im).__name__}")
                batch.append(self.preprocess(im))
            with torch.no_grad():
                z = self.model.encode_image(torch.stack(batch).to(self.device))
            out.append(z.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))
