"""W3, the what-where-when video attention module (Perez-Rua et al., "Knowing What, Where and When to
Look: Efficient Video Action Modeling with Attention", 2020; Sec. 3.1-3.3, eqs. 1-6).

Given a clip's feature map F (C x T x H x W per clip), the attention is factorised (eqs. 1-2):
F^c = M^c * F with the channel-temporal mask M^c (T x C), then F^s = M^s * F^c with the spatio-temporal
mask M^s (T x H x W).
- "what-when" (eqs. 3-4): per-frame avg- and max-pooled channel descriptors through a shared MLP
  (reduction r), summed, sigmoid -> M^c-frm; two 1D temporal convolutions (kernel 3) over each channel's
  sequence of M^c-frm, sigmoid -> M^c.
- "where-when" (eqs. 5-6): per-frame channel-avg and channel-max maps [avg, max] of F^c, one 7x7 2D conv,
  sigmoid -> M^s-frm; two 3x3x3 3D convs over the T stacked maps, sigmoid -> M^s.
The module takes a 2D recognizer's `(N*T, C, H, W)` map (with `num_segments`) or a 3D network's
`(N, C, T, H, W)` map and returns the attended map in the same layout.

This forward is the reference: plain `nn` layers in the paper's order. `vidattn.models.fast.optimize`
swaps in `FastW3`, the same sums on channels-last memory, tested against this module.
Choices the paper leaves open (defaults documented in docs/models.md): reduction ratio, whether the
temporal 1D convs are depthwise, the hidden width and activation of the two-layer temporal nets, and the
initialisation. Two sigmoid masks that start near 0.5 scale every attended residual branch by ~0.25 and
stall training from scratch and fine-tuning alike (docs/models.md, measured); by default the last layer
before each sigmoid starts with bias `mask_init_bias` = 3, so both masks open near sigmoid(3) = 0.95 and a
fresh W3 branch is ~0.9 x the plain one. `mask_init_bias=None` keeps PyTorch's default (paper-literal).
`causal=True` pads the temporal convolutions of eqs. 4 and 6 on the past side only (k-1 zeros before the
first frame, none after; `vidattn.models.causal`), so a frame's masks depend on frames up to it only; the
parameters and their names are the same as the centred model's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidattn.models.causal import CausalConv1d, CausalConv3d


class W3Attention(nn.Module):
    """W3 attention for `channels` feature channels.

    Args:
        reduction: MLP bottleneck ratio r of eq. 3 (hidden size `max(channels // r, min_hidden)`).
        temporal_kernel: K of the temporal convolutions (paper: 3 for both sub-modules).
        channel_temporal_groups: "depthwise" (each channel's sequence on its own, the paper's
            "per-channel temporal relationships") or "full" (C->C 1D convs).
        spatial_temporal_hidden: channels between the two 3D convs of eq. 6.
        spatial: False removes the spatio-temporal sub-module (Table 5 "w/o SA").
        temporal: False removes both temporal nets, leaving frame-level attention (Table 5 "w/o TA").
        mask_init_bias: initial bias of the last layer before each mask's sigmoid (masks start near
            sigmoid(bias)); None keeps PyTorch's default initialisation.
        causal: the temporal convolutions of eqs. 4 and 6 see the past only (padded on the past side).
    """

    def __init__(
        self,
        channels: int,
        num_segments: int | None = None,
        reduction: int = 16,
        min_hidden: int = 8,
        temporal_kernel: int = 3,
        spatial_kernel: int = 7,
        channel_temporal_groups: str = "depthwise",
        spatial_temporal_hidden: int = 4,
        spatial: bool = True,
        temporal: bool = True,
        mask_init_bias: float | None = 3.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if channel_temporal_groups not in ("depthwise", "full"):
            raise ValueError(f"channel_temporal_groups must be 'depthwise' or 'full', not {channel_temporal_groups!r}")
        self.num_segments = num_segments
        self.spatial = spatial
        self.temporal = temporal
        self.causal = causal or not temporal  # frame-level W3 sees its own frame only
        hidden = max(channels // reduction, min_hidden)
        # theta_c-frm: the shared MLP of eq. 3 (1x1 "convs" as linear layers on pooled descriptors).
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        # centred temporal padding, or none: a causal conv pads the past side itself
        pad = 0 if causal else temporal_kernel // 2
        conv1d, conv3d = (CausalConv1d, CausalConv3d) if causal else (nn.Conv1d, nn.Conv3d)
        if temporal:
            groups = channels if channel_temporal_groups == "depthwise" else 1
            # theta_c-vid of eq. 4: two 1D temporal convolutions over each channel's sequence.
            self.channel_temporal = nn.Sequential(
                conv1d(channels, channels, temporal_kernel, padding=pad, groups=groups),
                nn.ReLU(inplace=True),
                conv1d(channels, channels, temporal_kernel, padding=pad, groups=groups),
            )
        if spatial:
            # theta_s-frm of eq. 5: one 7x7 conv on the stacked [avg, max] channel-pooled maps.
            self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)
            if temporal:
                # theta_s-vid of eq. 6: two 3x3x3 convs over the T stacked frame maps.
                k = temporal_kernel
                self.spatial_temporal = nn.Sequential(
                    conv3d(1, spatial_temporal_hidden, (k, 3, 3), padding=(pad, 1, 1)),
                    nn.ReLU(inplace=True),
                    conv3d(spatial_temporal_hidden, 1, (k, 3, 3), padding=(pad, 1, 1)),
                )
        if mask_init_bias is not None:
            self.open_masks(mask_init_bias)

    def open_masks(self, bias: float) -> None:
        """Set the bias of the last layer before each sigmoid mask to `bias` (eq. 3's MLP output enters
        twice, avg + max, so it gets half). Masks then start near sigmoid(bias) for any input."""
        if self.temporal:
            nn.init.constant_(self.channel_temporal[-1].bias, bias)
        else:
            nn.init.constant_(self.channel_mlp[-1].bias, bias / 2)
        if self.spatial:
            last = self.spatial_temporal[-1] if self.temporal else self.spatial_conv
            nn.init.constant_(last.bias, bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The attended map (layout of `x`) and the masks: "channel" M^c as (N, T, C) and, with `spatial`,
        "spatial" M^s as (N, T, H, W)."""
        f = self.as_clips(x)  # (N, C, T, H, W)
        m_c = self.channel_mask(f)  # eqs. 3-4: (N, C, T)
        f_c = f * m_c[..., None, None]  # eq. 2: F^c = M^c (x) F
        maps = {"channel": m_c.transpose(1, 2)}
        if not self.spatial:
            return self.like(f_c, x), maps
        m_s = self.spatial_mask(f_c)  # eqs. 5-6: (N, 1, T, H, W)
        f_s = f_c * m_s  # eq. 2: F^s = M^s (x) F^c
        maps["spatial"] = m_s[:, 0]
        return self.like(f_s, x), maps

    def channel_mask(self, f: Tensor) -> Tensor:
        """Eqs. 3-4: M^c (N, C, T) of a clip map F (N, C, T, H, W)."""
        d_avg, d_max = f.mean(dim=(3, 4)), f.amax(dim=(3, 4))  # (N, C, T): one descriptor per frame
        mlp = self.channel_mlp  # shared by both descriptors, applied per frame on (N, T, C)
        m = torch.sigmoid(mlp(d_avg.transpose(1, 2)) + mlp(d_max.transpose(1, 2))).transpose(1, 2)  # eq. 3
        if self.temporal:
            m = torch.sigmoid(self.channel_temporal(m))  # eq. 4: 1D convs over each channel's sequence
        return m

    def spatial_mask(self, f_c: Tensor) -> Tensor:
        """Eqs. 5-6: M^s (N, 1, T, H, W) of a clip map F^c (N, C, T, H, W)."""
        n, _, t, h, w = f_c.shape
        d = torch.stack((f_c.mean(dim=1), f_c.amax(dim=1)), dim=2)  # (N, T, 2, H, W): [d_avg-s, d_max-s]
        m = torch.sigmoid(self.spatial_conv(d.flatten(0, 1)))  # eq. 5, per frame: (N*T, 1, H, W)
        m = m.view(n, t, h, w).unsqueeze(1)  # (N, 1, T, H, W): the T frame masks stacked
        if self.temporal:
            m = torch.sigmoid(self.spatial_temporal(m))  # eq. 6: 3D convs over the stacked frame masks
        return m

    def as_clips(self, x: Tensor) -> Tensor:
        """`x` as a clip map (N, C, T, H, W): a 3D network's map itself, a 2D recognizer's (N*T, C, H, W)
        frames viewed per clip (no copy)."""
        if x.dim() == 5:
            return x
        t = self.num_segments
        if t is None:
            raise ValueError("a 4D (N*T, C, H, W) input needs num_segments")
        if x.shape[0] % t:
            raise ValueError(f"W3: batch {x.shape[0]} is not a multiple of num_segments={t}")
        return x.view(-1, t, *x.shape[1:]).transpose(1, 2)

    @staticmethod
    def like(f: Tensor, x: Tensor) -> Tensor:
        """A clip map (N, C, T, H, W) in the layout of the input `x` (the inverse of `as_clips`)."""
        return f if x.dim() == 5 else f.transpose(1, 2).reshape(x.shape)
