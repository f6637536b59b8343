"""``dinov3`` (alias ``dinov3-s``), ``dinov3-b``, ``dinov3-l``: timm ``vit_{small,base,large}_patch16_dinov3.lvd1689m``
(RoPE, 4 register tokens), through the same code path as DINOv2 (:mod:`.vit_foundation`): input resized to a
multiple of the 16-pixel patch (``--dinov2-size`` rounded), CLS token after the final norm, the channel adapter for
data that is not 8-bit RGB. The weights are under Meta's DINOv3 License; the report says so.
"""

from __future__ import annotations

from .vit_foundation import register_foundation

__all__: list[str] = []

for _name, _aliases in (("dinov3", ("dinov3-s",)), ("dinov3-b", ()), ("dinov3-l", ())):
    register_foundation(_name, _aliases, section="dinov3")
del _name, _aliases
