"""Every registered model, as data: a backbone depth, a temporal module, an attention module.

Names read `{temporal}_{attention}_{backbone}`: `tsn_r50` (no temporal modelling), `tsm_r50` (temporal
shift), `tam_r50` (depthwise temporal aggregation), `i3d_r18` (inflated 3D ResNet), each optionally with
`w3`, `cbam` or `nl` attention; `c3d` / `c3d_attention` are the UCF-101 paper's models. Options of
`create_model` reach the builders below (documented in docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from torch import nn

from vidattn.models.attention import CBAM, NonLocalBlock, W3Attention
from vidattn.models.c3d_attention import C3DAttention
from vidattn.models.recognizer import VideoRecognizer
from vidattn.models.registry import register_model
from vidattn.models.resnet import BLOCKS, ResNet2d
from vidattn.models.resnet3d import ResNet3d
from vidattn.models.tam import TemporalAggregation
from vidattn.models.temporal_shift import TemporalShift

ATTENTION: dict[str, Callable[..., nn.Module]] = {"w3": W3Attention, "cbam": CBAM}
# TSM's non-local variant: after blocks layer2[0], layer2[2], layer3[0], layer3[2], layer3[4] (ResNet-50),
# also used on ResNet-101 (as TSM); on ResNet-18/34 the same rule, every other block of layers 2 and 3.
TSM_NON_LOCAL_POSITIONS = ((2, 0), (2, 2), (3, 0), (3, 2), (3, 4))


def tsm_non_local_positions(depth: int) -> tuple[tuple[int, int], ...]:
    """TSM's five blocks on ResNet-50/101; every other block of layers 2 and 3 on shallower ResNets."""
    if depth >= 50:
        return TSM_NON_LOCAL_POSITIONS
    counts = BLOCKS[depth][1]
    return tuple((s, i) for s in (2, 3) for i in range(0, counts[s - 1], 2))
# The non-local paper's I3D ResNet-50 (5 blocks): after layer2[1], layer2[3], layer3[1], layer3[3], layer3[5].
I3D_NON_LOCAL_POSITIONS = ((2, 1), (2, 3), (3, 1), (3, 3), (3, 5))


def _attention_factory(attention: str | None, options: Mapping[str, Any] | None
                       ) -> Callable[[int, int | None], nn.Module] | None:
    if attention is None:
        return None
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; choose from {sorted(ATTENTION)}")
    cls = ATTENTION[attention]
    return lambda channels, segments: cls(channels, segments, **dict(options or {}))


def _temporal_factory(temporal: str | None, shift_div: int, tam_identity_init: bool, causal: bool
                      ) -> Callable[[int, int | None], nn.Module] | None:
    if temporal == "shift":
        return lambda channels, segments: TemporalShift(channels, segments, fold_div=shift_div, causal=causal)
    if temporal == "tam":
        return lambda channels, segments: TemporalAggregation(channels, segments, identity_init=tam_identity_init)
    if temporal is None:
        return None
    raise ValueError(f"unknown temporal module {temporal!r}; choose 'shift', 'tam' or None")


def _use_afr(afr: bool | None, attention: str | None, attention_options: Mapping[str, Any] | None) -> bool:
    """AFR defaults to on for W3 with its spatial sub-module (the paper's full model; it needs the masks)."""
    if afr is not None:
        return afr
    return attention == "w3" and bool((attention_options or {}).get("spatial", True))


def build_recognizer2d(
    depth: int,
    num_classes: int | Sequence[int],
    num_segments: int,
    temporal: str | None = None,
    attention: str | None = None,
    non_local: bool = False,
    non_local_mode: str = "embedded_gaussian",
    afr: bool | None = None,
    dropout: float = 0.5,
    shift_div: int = 8,
    shift_place: str = "residual",
    temporal_every: int | None = None,
    tam_identity_init: bool = True,
    attention_options: Mapping[str, Any] | None = None,
    base_width: int = 64,
    stem: str = "imagenet",
    causal: bool = False,
) -> VideoRecognizer:
    """A 2D-backbone recognizer (TSN/TSM/TAM, + W3/CBAM/non-local).

    `temporal`: None (TSN), "shift" (TSM; `shift_div`, `shift_place` "residual" = TSM's "blockres" or
    "block") or "tam". `temporal_every` defaults to 2 for ResNet-101 (as TSM), 1 otherwise. `afr` defaults
    to True with W3 attention (the paper's full model) and must be False without attention. `base_width`
    below 64 builds a narrower ResNet for quick CPU runs, `stem="small"` a CIFAR-style stem for 32-64 px
    inputs (no ImageNet weights then). `causal=True` builds the online variant (docs/models.md): the shift
    takes one fold from the past frame only (TSM's online mode), W3's temporal convs are padded on the past
    side only; CBAM and AFR work per frame and are unchanged; TAM and non-local blocks have no causal variant.
    """
    if causal and temporal == "tam":
        raise ValueError("causal=True: TAM (tam_*) blends the next frame into each frame and has no causal variant; "
                         "use tsm_* or tsn_*")
    if causal and non_local:
        raise ValueError("causal=True: the non-local blocks of tsm_nl_* attend to every frame of the clip and have no "
                         "causal variant")
    if causal and attention == "w3":
        attention_options = {**(attention_options or {}), "causal": True}
    temporal_layer = _temporal_factory(temporal, shift_div, tam_identity_init, causal)
    backbone = ResNet2d(
        depth,
        num_segments=num_segments,
        temporal_layer=temporal_layer,
        temporal_place=shift_place,
        temporal_every=temporal_every or (2 if depth == 101 and temporal == "shift" else 1),
        attn_layer=_attention_factory(attention, attention_options),
        post_layer=(lambda c, t: NonLocalBlock(c, t, mode=non_local_mode)) if non_local else None,
        post_positions=tsm_non_local_positions(depth) if non_local else (),
        base_width=base_width,
        stem=stem,
    )
    use_afr = _use_afr(afr, attention, attention_options)
    return VideoRecognizer(backbone, num_classes, num_segments, per_frame=True, dropout=dropout, afr=use_afr)


def build_recognizer3d(
    depth: int,
    num_classes: int | Sequence[int],
    num_segments: int,
    attention: str | None = None,
    non_local: bool = False,
    non_local_mode: str = "embedded_gaussian",
    afr: bool | None = None,
    dropout: float = 0.5,
    stem_temporal_kernel: int = 5,
    temporal_pool: bool = True,
    inflation: Sequence[Sequence[int]] | None = None,
    attention_options: Mapping[str, Any] | None = None,
    base_width: int = 64,
    causal: bool = False,
) -> VideoRecognizer:
    """An I3D ResNet recognizer (+ W3 / non-local); `num_segments` is the clip length it expects."""
    if causal:
        raise ValueError("causal=True: I3D (i3d_*) convolves over time with centred 3D kernels and has no causal "
                         "variant; use a 2D recognizer (tsm_*, tsm_w3_*, tsm_cbam_*, tsn_*)")
    if attention == "cbam":
        raise ValueError("CBAM is an image attention module; use it with 2D backbones (tsm_cbam_*)")
    backbone = ResNet3d(
        depth,
        attn_layer=_attention_factory(attention, attention_options),
        post_layer=(lambda c, t: NonLocalBlock(c, mode=non_local_mode)) if non_local else None,
        post_positions=I3D_NON_LOCAL_POSITIONS if non_local else (),
        stem_temporal_kernel=stem_temporal_kernel,
        temporal_pool=temporal_pool,
        inflation=inflation,
        base_width=base_width,
    )
    use_afr = _use_afr(afr, attention, attention_options)
    return VideoRecognizer(backbone, num_classes, num_segments, per_frame=False, dropout=dropout, afr=use_afr)


def _register_2d(prefix: str, temporal: str | None, attention: str | None, non_local: bool,
                 depths: Sequence[int]) -> None:
    for depth in depths:
        register_model(partial(build_recognizer2d, depth, temporal=temporal, attention=attention,
                               non_local=non_local), name=f"{prefix}_r{depth}")


_register_2d("tsn", None, None, False, (18, 34, 50, 101))
_register_2d("tsm", "shift", None, False, (18, 34, 50, 101))
_register_2d("tsm_w3", "shift", "w3", False, (18, 34, 50, 101))
_register_2d("tsm_cbam", "shift", "cbam", False, (18, 50, 101))
_register_2d("tsm_nl", "shift", None, True, (18, 50, 101))
_register_2d("tsn_w3", None, "w3", False, (18, 50))
_register_2d("tam", "tam", None, False, (18, 50))
_register_2d("tam_w3", "tam", "w3", False, (18, 50))
for _depth in (18, 50):
    register_model(partial(build_recognizer3d, _depth), name=f"i3d_r{_depth}")
    register_model(partial(build_recognizer3d, _depth, attention="w3"), name=f"i3d_w3_r{_depth}")
register_model(partial(build_recognizer3d, 50, non_local=True), name="i3d_nl_r50")
register_model(partial(C3DAttention, attention=False), name="c3d")
register_model(partial(C3DAttention, attention=True), name="c3d_attention")
